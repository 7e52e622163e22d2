// CUDA streams and graphs for the decode step (DESIGN.md section 4): every per-step buffer has a
// fixed address, so the step's kernels can be captured once into a graph and replayed each step.
// Plain g++ header; built without CUDA every call throws retrokv::Error("built without CUDA").
#pragma once

#include "retrokv/cuda/device.h"

struct CUgraphExec_st;

namespace retrokv::cuda {

/// An owned non-blocking CUDA stream. Move-only.
class CudaStream {
 public:
  CudaStream();
  ~CudaStream();
  CudaStream(CudaStream&& o) noexcept;
  CudaStream& operator=(CudaStream&& o) noexcept;
  CudaStream(const CudaStream&) = delete;
  CudaStream& operator=(const CudaStream&) = delete;
  Stream get() const { return stream_; }
  void synchronize() const;

 private:
  Stream stream_ = nullptr;
};

/// A captured and instantiated CUDA graph: begin_capture(s); enqueue launches on s;
/// end_capture(s); then launch(s) replays the same kernels with the same arguments (so the
/// buffers they read must be updated in place between replays). Move-only.
class CudaGraph {
 public:
  CudaGraph() = default;
  ~CudaGraph();
  CudaGraph(CudaGraph&& o) noexcept;
  CudaGraph& operator=(CudaGraph&& o) noexcept;
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  /// Starts capturing `stream` (not the default stream). Throws on a CUDA error.
  void begin_capture(Stream stream);
  /// Ends the capture and instantiates the graph. Throws on a CUDA error (e.g. a launch that
  /// cannot be captured).
  void end_capture(Stream stream);
  /// Replays the graph on `stream`.
  void launch(Stream stream) const;
  bool ready() const { return exec_ != nullptr; }

 private:
  CUgraphExec_st* exec_ = nullptr;
};

}  // namespace retrokv::cuda

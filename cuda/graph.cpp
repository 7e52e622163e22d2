// CudaStream and CudaGraph (retrokv/cuda/graph.h) over the CUDA runtime API.
#include "retrokv/cuda/graph.h"

#include <cuda_runtime.h>

#include <utility>

#include "retrokv/core/error.h"

namespace retrokv::cuda {

CudaStream::CudaStream() {
  require_device();
  check_status(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
}
CudaStream::~CudaStream() {
  if (stream_ != nullptr) (void)cudaStreamDestroy(stream_);
}
CudaStream::CudaStream(CudaStream&& o) noexcept : stream_(std::exchange(o.stream_, nullptr)) {}
CudaStream& CudaStream::operator=(CudaStream&& o) noexcept {
  if (this != &o) {
    if (stream_ != nullptr) (void)cudaStreamDestroy(stream_);
    stream_ = std::exchange(o.stream_, nullptr);
  }
  return *this;
}
void CudaStream::synchronize() const {
  check_status(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
}

CudaGraph::~CudaGraph() {
  if (exec_ != nullptr) (void)cudaGraphExecDestroy(exec_);
}
CudaGraph::CudaGraph(CudaGraph&& o) noexcept : exec_(std::exchange(o.exec_, nullptr)) {}
CudaGraph& CudaGraph::operator=(CudaGraph&& o) noexcept {
  if (this != &o) {
    if (exec_ != nullptr) (void)cudaGraphExecDestroy(exec_);
    exec_ = std::exchange(o.exec_, nullptr);
  }
  return *this;
}

void CudaGraph::begin_capture(Stream stream) {
  RETROKV_CHECK(stream != nullptr, "stream: expected a created stream (the default stream cannot ",
                "be captured), got nullptr");
  check_status(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal),
               "cudaStreamBeginCapture");
}

void CudaGraph::end_capture(Stream stream) {
  cudaGraph_t graph = nullptr;
  check_status(cudaStreamEndCapture(stream, &graph), "cudaStreamEndCapture");
  cudaGraphExec_t exec = nullptr;
  const cudaError_t err = cudaGraphInstantiate(&exec, graph, 0);
  (void)cudaGraphDestroy(graph);
  check_status(err, "cudaGraphInstantiate");
  if (exec_ != nullptr) (void)cudaGraphExecDestroy(exec_);
  exec_ = exec;
}

void CudaGraph::launch(Stream stream) const {
  RETROKV_CHECK(exec_ != nullptr, "graph: expected a captured graph (call end_capture first)");
  check_status(cudaGraphLaunch(exec_, stream), "cudaGraphLaunch");
}

}  // namespace retrokv::cuda

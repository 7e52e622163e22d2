// The sequence file of a KVVectorStore (issue 7 "API": save_sequence / load_sequence): one
// sequence's KV, indexes and decode state in a versioned, checksummed file (core/checksum.h),
// which a store with the same shape, policy and steady zone reads back.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "retrokv/core/checksum.h"
#include "retrokv/core/error.h"
#include "retrokv/core/half.h"
#include "retrokv/core/view.h"
#include "retrokv/index/roar_graph.h"
#include "retrokv/index/wave_index.h"
#include "retrokv/store/head_index.h"
#include "retrokv/store/kv_rows.h"
#include "retrokv/store/store_config.h"
#include "retrokv/store/store_error.h"
#include "retrokv/store/store_layer.h"

namespace retrokv::detail {

// File: magic kSequenceFileMagic, version kSequenceFileVersion (BinaryWriter's framing), then
// header: n_layers, n_q_heads, n_kv_heads, head_dim (i32), kv_dtype, policy (u8), n_sink,
// n_local (i32), update_interval (i64), quest_page_size (i32); per layer: started (bool),
// n_tokens, n_prefill, since_update (i64); per KV head: indexed_end (i64), K and V bytes,
// then the index: RoarGraph image / wave image (u64 size + bytes); quest and flat rebuild.
inline constexpr const char* kSequenceFileMagic = "RKVSEQ01";
inline constexpr uint32_t kSequenceFileVersion = 1;

// WaveIndex saves to a path only: go through a private temporary file.
inline std::string wave_temp_path(const char* what) {
  static std::atomic<uint64_t> counter{0};
  return (std::filesystem::temp_directory_path() /
          ("retrokv-" + std::string(what) + "-" + std::to_string(::getpid()) + "-" +
           std::to_string(counter.fetch_add(1))))
      .string();
}
inline std::vector<uint8_t> wave_to_bytes(const WaveIndex& w) {
  const std::string tmp = wave_temp_path("wave-save");
  try {
    w.save(tmp);
    std::vector<uint8_t> bytes = read_file(tmp);
    std::filesystem::remove(tmp);
    return bytes;
  } catch (...) {
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    throw;
  }
}
inline WaveIndex wave_from_bytes(const std::vector<uint8_t>& bytes, const std::string& path) {
  const std::string tmp = wave_temp_path("wave-load");
  try {
    write_file_atomic(tmp, bytes.data(), bytes.size());
    WaveIndex w = WaveIndex::load(tmp);
    std::filesystem::remove(tmp);
    return w;
  } catch (const Error& e) {
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    RETROKV_STORE_FAIL(StoreErrorCode::kFile, "path: '", path, "': wave index: ", e.what());
  }
}

inline void write_sequence_header(const StoreConfig& config, BinaryWriter& w) {
  w.write<int32_t>(config.n_layers);
  w.write<int32_t>(config.n_q_heads);
  w.write<int32_t>(config.n_kv_heads);
  w.write<int32_t>(config.head_dim);
  w.write<uint8_t>(static_cast<uint8_t>(config.kv_dtype));
  w.write<uint8_t>(static_cast<uint8_t>(config.policy));
  w.write<int32_t>(config.params.n_sink);
  w.write<int32_t>(config.params.n_local);
  w.write<int64_t>(config.params.update_interval);
  w.write<int32_t>(config.params.quest_page_size);
}

// Throws StoreError(kFile) naming the first field where the file differs from config.
inline void read_sequence_header(const StoreConfig& config, BinaryReader& r,
                                 const std::string& path) {
  auto expect = [&](const char* field, int64_t saved, int64_t mine) {
    if (saved != mine)
      RETROKV_STORE_FAIL(StoreErrorCode::kFile, "path: '", path, "' was saved with ", field, " = ",
                         saved, ", this store has ", field, " = ", mine);
  };
  expect("n_layers", r.read<int32_t>(), config.n_layers);
  expect("n_q_heads", r.read<int32_t>(), config.n_q_heads);
  expect("n_kv_heads", r.read<int32_t>(), config.n_kv_heads);
  expect("head_dim", r.read<int32_t>(), config.head_dim);
  const uint8_t dt = r.read<uint8_t>();
  if (dt != static_cast<uint8_t>(config.kv_dtype))
    RETROKV_STORE_FAIL(StoreErrorCode::kFile, "path: '", path,
                       "' was saved with kv_dtype = ", dtype_name(static_cast<DType>(dt)),
                       ", this store has ", dtype_name(config.kv_dtype));
  const uint8_t pol = r.read<uint8_t>();
  if (pol != static_cast<uint8_t>(config.policy))
    RETROKV_STORE_FAIL(StoreErrorCode::kFile, "path: '", path, "' was saved with policy ",
                       policy_name(static_cast<Policy>(pol)), ", this store has ",
                       policy_name(config.policy));
  expect("params.n_sink", r.read<int32_t>(), config.params.n_sink);
  expect("params.n_local", r.read<int32_t>(), config.params.n_local);
  expect("params.update_interval", r.read<int64_t>(), config.params.update_interval);
  expect("params.quest_page_size", r.read<int32_t>(), config.params.quest_page_size);
}

// The layer must not be building (the caller waited for it).
inline void write_sequence_layer(const StoreConfig& config, BinaryWriter& w, const StoreLayer& L) {
  w.write<bool>(L.started);
  w.write<int64_t>(L.n_tokens);
  w.write<int64_t>(L.n_prefill);
  w.write<int64_t>(L.since_update);
  for (int h = 0; h < config.n_kv_heads; ++h) {
    const detail::HeadIndex& hi = L.heads[h];
    w.write<int64_t>(hi.indexed_end);
    w.write_bytes(L.k[h].bytes(), static_cast<size_t>(L.n_tokens * L.k[h].row_bytes()));
    w.write_bytes(L.v[h].bytes(), static_cast<size_t>(L.n_tokens * L.v[h].row_bytes()));
    std::vector<uint8_t> image;
    if (hi.roar) image = hi.roar->to_bytes();
    if (hi.wave) image = wave_to_bytes(*hi.wave);
    w.write_vector(image);
  }
}

// Reads one layer into L, fresh from KVVectorStore::new_sequence (empty rows, one HeadIndex per
// KV head). Every inconsistency throws (BinaryReader::check); threads builds the quest index,
// which is not saved but rebuilt.
inline void read_sequence_layer(const StoreConfig& config, int threads, BinaryReader& r,
                                StoreLayer& L, const std::string& path) {
  const int d = config.head_dim;
  const PolicyParams& pp = config.params;
  L.started = r.read<bool>();
  L.n_tokens = r.read<int64_t>();
  L.n_prefill = r.read<int64_t>();
  L.since_update = r.read<int64_t>();
  r.check(L.n_tokens >= 0 && L.n_tokens < (int64_t{1} << 31) - 1 && L.n_prefill >= 0 &&
              L.n_prefill <= L.n_tokens && L.since_update >= 0 &&
              L.since_update < std::max<int64_t>(1, pp.update_interval) &&
              (L.started || L.n_tokens == 0),
          "layer counters");
  for (int h = 0; h < config.n_kv_heads; ++h) {
    detail::HeadIndex& hi = L.heads[h];
    hi.indexed_end = r.read<int64_t>();
    r.check(hi.indexed_end >= pp.n_sink &&
                (hi.indexed_end == pp.n_sink || hi.indexed_end <= L.n_tokens),
            "indexed_end ", hi.indexed_end);
    const uint64_t row_bytes = static_cast<uint64_t>(L.k[h].row_bytes());
    r.check(static_cast<uint64_t>(L.n_tokens) <= r.remaining() / (2 * row_bytes), "KV truncated");
    for (KVRows* rows : {&L.k[h], &L.v[h]}) {
      std::vector<uint8_t> raw(static_cast<size_t>(L.n_tokens * row_bytes));
      r.read_bytes(raw.data(), raw.size());
      rows->reserve_extra(L.n_tokens);
      rows->append_bytes(raw.data(), L.n_tokens);
    }
    std::vector<uint8_t> image = r.read_vector<uint8_t>();
    const int64_t indexed = std::max<int64_t>(0, std::min(hi.indexed_end, L.n_tokens) - pp.n_sink);
    const Policy p = config.policy;
    if (p == Policy::kRoarGraph) {
      r.check(image.empty() == (indexed == 0), "RoarGraph image presence");
      if (!image.empty()) {
        hi.roar = std::make_unique<RoarGraphIndex>(RoarGraphIndex::from_bytes(std::move(image)));
        r.check(hi.roar->size() == indexed && hi.roar->dim() == d, "RoarGraph size");
      }
    } else if (p == Policy::kWave) {
      if (!image.empty()) {
        hi.wave = std::make_unique<WaveIndex>(wave_from_bytes(image, path));
        r.check(hi.wave->size() == L.n_tokens && hi.wave->dim() == d, "wave index size");
      }
    } else {
      r.check(image.empty(), "unexpected index image for policy ", policy_name(p));
      if (p == Policy::kQuest && indexed > 0) {
        const int64_t end = hi.indexed_end;
        hi.indexed_end = pp.n_sink;
        detail::build_head_index(hi, p, pp, threads, L.k[h], pp.n_sink, end,
                                 ConstMatrixView<float>());
      }
    }
  }
  // Stored values must be finite, as the inputs they came from were.
  for (int h = 0; h < config.n_kv_heads; ++h) {
    for (const KVRows* rows : {&L.k[h], &L.v[h]}) {
      Matrix<float> f = detail::rows_to_float(*rows, 0, rows->rows());
      for (int64_t i = 0; i < f.rows() * f.cols(); ++i)
        r.check(std::isfinite(f.data()[i]), "non-finite stored value");
    }
  }
}

}  // namespace retrokv::detail

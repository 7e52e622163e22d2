// Shared by the model-driven subcommands (e2e, passkey): comma lists and the long-context text.
#pragma once

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "retrokv/core/error.h"
#include "retrokv/engine/tokenizer.h"

namespace retrokv::eval {

/// "a,b,,c" -> {"a", "b", "c"}.
inline std::vector<std::string> split_csv(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

/// Tokens of the text file `path` (--text), without specials, cut to `max_tokens` (0 = all).
inline std::vector<int32_t> encode_text_file(const engine::Tokenizer& tok, const std::string& path,
                                             int64_t max_tokens) {
  std::ifstream in(path, std::ios::binary);
  RETROKV_CHECK(in.good(), "--text: cannot open '", path, "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  std::vector<int32_t> ids = tok.encode(ss.str(), false);
  if (max_tokens > 0 && static_cast<int64_t>(ids.size()) > max_tokens) ids.resize(max_tokens);
  return ids;
}

}  // namespace retrokv::eval

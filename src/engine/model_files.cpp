// Model file lookup (model_files.h).
#include "retrokv/engine/model_files.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "retrokv/core/error.h"

namespace retrokv::engine {

std::vector<std::string> model_search_paths() {
  namespace fs = std::filesystem;
  std::vector<std::string> paths;
  if (const char* dir = std::getenv("RETROKV_MODEL_DIR"); dir != nullptr && *dir != '\0')
    paths.push_back((fs::path(dir) / kSmolLM2FileName).string());
  paths.push_back((fs::path("models") / kSmolLM2FileName).string());
  char exe[4096];
  const ssize_t len = ::readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (len > 0) {
    exe[len] = '\0';
    const fs::path repo = fs::path(exe).parent_path().parent_path().parent_path();
    paths.push_back((repo / "models" / kSmolLM2FileName).string());
  }
  return paths;
}

std::string find_model(const std::string& explicit_path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!explicit_path.empty()) {
    RETROKV_CHECK(fs::is_regular_file(explicit_path, ec), "--model: no such file '", explicit_path,
                  "'; fetch SmolLM2 with ", kFetchModelCommand);
    return explicit_path;
  }
  const std::vector<std::string> paths = model_search_paths();
  for (const std::string& p : paths)
    if (fs::is_regular_file(p, ec)) return p;
  std::ostringstream looked;
  for (const std::string& p : paths) looked << "\n  " << p;
  RETROKV_FAIL("model not found; looked in:", looked.str(), "\nFetch it with: ", kFetchModelCommand,
               " (from the repository root; RETROKV_MODEL_DIR picks the directory) or pass "
               "--model PATH");
}

}  // namespace retrokv::engine

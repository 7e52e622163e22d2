// Small helpers shared by the test binaries: sanitizer detection, error capture, scratch dirs.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <random>
#include <string>

#include "retrokv/core/error.h"

namespace retrokv {

/// True in the CI's ASan/UBSan pass (scripts/test.sh sets RETROKV_SANITIZER_BUILD=1): tests
/// shrink their sizes there, never their assertions.
inline bool sanitizer_build() {
  const char* s = std::getenv("RETROKV_SANITIZER_BUILD");
  return s != nullptr && std::string(s) != "0";
}

/// The message of the retrokv::Error that f throws, or "" when it throws none.
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

/// A fresh scratch directory under the system temp dir, removed with everything in it.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    path = std::filesystem::temp_directory_path() / ("retrokv_test_" + std::to_string(::getpid()) +
                                                     "_" + std::to_string(std::random_device{}()));
    std::filesystem::create_directories(path);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() { std::filesystem::remove_all(path); }
};

}  // namespace retrokv

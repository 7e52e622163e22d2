// retrokv-eval: the measurement harness. One subcommand per question:
//   recall    — recall vs keys scanned of every index (RoarGraph, IVF, Flat, HNSW, Faiss)
//   fidelity  — attention-output error of the sparse policies vs full attention
//   e2e       — SmolLM2 end to end: each sparse backend vs full attention (issue 7)
//   passkey   — SmolLM2 pass-key retrieval at several depths per backend (issue 7)
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "retrokv/core/error.h"

namespace retrokv::eval {
int run_recall(int argc, char** argv);
int run_fidelity(int argc, char** argv);
int run_e2e(int argc, char** argv);
int run_passkey(int argc, char** argv);
}  // namespace retrokv::eval

namespace {
void usage() {
  std::fprintf(stderr,
               "usage: retrokv-eval <command> [options]\n"
               "  recall    recall@k vs keys scanned for every index (--help for options)\n"
               "  fidelity  attention error of the sparse policies vs full attention\n"
               "  e2e       SmolLM2 end to end: sparse backends vs full attention\n"
               "  passkey   SmolLM2 pass-key retrieval at several depths per backend\n");
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    usage();
    return argc < 2 ? 2 : 0;
  }
  const std::string cmd = argv[1];
  try {
    if (cmd == "recall") return retrokv::eval::run_recall(argc - 1, argv + 1);
    if (cmd == "fidelity") return retrokv::eval::run_fidelity(argc - 1, argv + 1);
    if (cmd == "e2e") return retrokv::eval::run_e2e(argc - 1, argv + 1);
    if (cmd == "passkey") return retrokv::eval::run_passkey(argc - 1, argv + 1);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "retrokv-eval %s: %s\n", cmd.c_str(), e.what());
    return 1;
  }
  std::fprintf(stderr, "retrokv-eval: unknown command '%s'\n", cmd.c_str());
  usage();
  return 2;
}

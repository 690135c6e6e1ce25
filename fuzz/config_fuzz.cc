// Configuration parsing (shim/config.h): command-line flags, ETCD_*
// variables and the YAML --config-file, as `detcd` reads them at start-up.
//
// Input: byte(mode) then bytes:
//   mode even: the bytes are a config file's contents (YAML), read through
//              --config-file (the file is written to a scratch path);
//   mode odd:  lines; each line starting with "ETCD_" is an environment
//              entry, every other line a command-line argument (lines
//              naming a config file are dropped: mode even covers files).
// Oracles: no crash; an outcome is either a configuration (kRun) or text
// to print with an exit code (0 only for --help / --version).
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "fuzz/fuzz_target.h"
#include "shim/config.h"

namespace detcd::fuzz {
namespace {

// One scratch file per process, removed at exit.
const std::string& ScratchPath() {
  static const std::string* path = [] {
    const char* tmp = std::getenv("TMPDIR");
    auto* p = new std::string(std::string(tmp && *tmp ? tmp : "/tmp") +
                              "/detcd-fuzz-config-" +
                              std::to_string(getpid()) + ".yaml");
    std::atexit([] { std::remove(ScratchPath().c_str()); });
    return p;
  }();
  return *path;
}

void Check(const shim::ParseOutcome& out) {
  if (out.action == shim::ParseOutcome::Action::kPrintAndExit) {
    if (out.output.empty()) Fail("an exit without anything to print");
    if (out.exit_code == 0 && !out.error.empty()) {
      Fail("an error that exits with status 0");
    }
  } else if (!out.error.empty()) {
    Fail("a configuration to run with an error");
  }
}

}  // namespace
}  // namespace detcd::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace detcd;
  using namespace detcd::fuzz;
  std::string_view in = AsView(data, size);
  const uint8_t mode = TakeByte(&in);
  std::vector<std::string> args, env;
  if (mode % 2 == 0) {
    {
      std::ofstream f(ScratchPath(), std::ios::binary | std::ios::trunc);
      f.write(in.data(), static_cast<std::streamsize>(in.size()));
      if (!f) Fail("cannot write the scratch config file");
    }
    args.push_back("--config-file=" + ScratchPath());
  } else {
    while (!in.empty()) {
      const size_t nl = in.find('\n');
      const std::string_view line = in.substr(0, nl);
      in = nl == std::string_view::npos ? std::string_view() : in.substr(nl + 1);
      // Mode 0 covers the file; here a fuzzed path could name /dev/zero.
      if (line.find("config-file") != std::string_view::npos ||
          line.find("CONFIG_FILE") != std::string_view::npos) {
        continue;
      }
      if (line.substr(0, 5) == "ETCD_") {
        env.emplace_back(line);
      } else {
        args.emplace_back(line);
      }
    }
  }
  Check(shim::ParseServerConfig(args, env));
  return 0;
}

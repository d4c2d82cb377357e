// What every harness shares: the one rule they check beyond "no crash, no leak, no UB" (only
// the core's typed errors leave it, each with a message), and a scratch file for the readers
// that take a path.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/errors.h"

namespace tsnative_fuzz {

// An error the core threw for a bad input: fine, as long as it says why.
inline void check_error(const tsnative::Error& error) {
  if (std::string(error.what()).empty()) {
    std::fprintf(stderr, "a %s with an empty message\n", typeid(error).name());
    std::abort();
  }
}

// A file in the temp directory, private to this process, rewritten for each input.
class ScratchFile {
 public:
  explicit ScratchFile(const std::string& name)
      : path_((std::filesystem::temp_directory_path() /
               ("tsnative_fuzz_" + std::to_string(getpid()) + "_" + name))
                  .string()) {}
  ~ScratchFile() { std::remove(path_.c_str()); }

  const std::string& write(const uint8_t* data, size_t size) const {
    std::ofstream out(path_, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    return path_;
  }

 private:
  std::string path_;
};

}  // namespace tsnative_fuzz

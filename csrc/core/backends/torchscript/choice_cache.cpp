#include "core/backends/torchscript/choice_cache.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <ATen/Parallel.h>
#include <ATen/cpu/Utils.h>
#include <nlohmann/json.hpp>

#include "core/runtime.h"

namespace tsnative {
namespace {

constexpr uint64_t kFnvOffset = 14695981039346656037ull;
constexpr uint64_t kFnvPrime = 1099511628211ull;

// FNV-1a over 8-byte words (then the tail byte by byte): a model of 45 MB hashes in ~10 ms
// rather than the ~50 ms of a byte at a time. Not cryptographic: an entry holds its whole key.
uint64_t fnv1a(const unsigned char* bytes, size_t size, uint64_t hash = kFnvOffset) {
  size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    uint64_t word;
    std::memcpy(&word, bytes + i, 8);
    hash = (hash ^ word) * kFnvPrime;
  }
  for (; i < size; ++i) hash = (hash ^ bytes[i]) * kFnvPrime;
  return hash;
}

std::string hex(uint64_t value) {
  char text[17];
  std::snprintf(text, sizeof(text), "%016llx", static_cast<unsigned long long>(value));
  return text;
}

std::string cpu_description() {
  std::string model;
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("model name", 0) == 0) {
      model = line.substr(line.find(':') + 1);
      break;
    }
  }
  std::vector<std::string> capabilities;
  for (const auto& [name, value] : at::cpu::get_cpu_capabilities()) {
    if (value.isBool() && value.toBool()) capabilities.push_back(name);
  }
  std::sort(capabilities.begin(), capabilities.end());
  for (const auto& name : capabilities) model += " " + name;
  return model;
}

std::string describe_inputs(const std::vector<c10::IValue>& inputs) {
  std::ostringstream text;
  for (const auto& input : inputs) {
    if (input.isTensor()) {
      const auto& tensor = input.toTensor();
      text << c10::toString(tensor.scalar_type()) << tensor.sizes() << " ";
    } else {
      text << input.tagKind() << " ";  // values of other types do not change the timings' shape
    }
  }
  return text.str();
}

std::filesystem::path entry_path(const std::string& dir, const std::string& key) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(key.data());
  return std::filesystem::path(dir) / "choices" / (hex(fnv1a(bytes, key.size())) + ".json");
}

}  // namespace

std::string default_choice_cache_dir() {
  if (const char* dir = std::getenv("TSNATIVE_CACHE_DIR")) return dir;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && *xdg != '\0') {
    return std::string(xdg) + "/tsnative";
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
    return std::string(home) + "/.cache/tsnative";
  }
  return "";
}

std::string archive_hash(caffe2::serialize::ReadAdapterInterface& archive) {
  constexpr size_t kChunk = 1 << 20;
  std::vector<unsigned char> buffer(kChunk);
  uint64_t hash = kFnvOffset;
  const size_t size = archive.size();
  for (size_t at = 0; at < size; at += kChunk) {
    const size_t count = std::min(kChunk, size - at);
    const size_t read = archive.read(at, buffer.data(), count, "hashing the model");
    hash = fnv1a(buffer.data(), read, hash);
    if (read < count) break;
  }
  return hex(hash) + "-" + std::to_string(size);
}

std::string choice_key(const std::string& model_hash, const std::string& level,
                       const std::string& device, const std::vector<c10::IValue>& inputs) {
  return "model " + model_hash + "; optimize " + level + "; device " + device + "; inputs " +
         describe_inputs(inputs) + "; threads " + std::to_string(at::get_num_threads()) + "; cpu " +
         cpu_description() + "; LibTorch " + torch_version() + "; tsnative " + TSNATIVE_VERSION;
}

std::optional<CachedChoice> cached_choice(const std::string& dir, const std::string& key) {
  if (dir.empty()) return std::nullopt;
  std::ifstream file(entry_path(dir, key));
  if (!file) return std::nullopt;
  try {
    const auto entry = nlohmann::json::parse(file);
    if (entry.at("key").get<std::string>() != key) return std::nullopt;
    return CachedChoice{entry.at("variant").get<std::string>(),
                        entry.at("timings").get<std::string>()};
  } catch (const std::exception&) {
    return std::nullopt;  // not an entry this version wrote: a miss, overwritten later
  }
}

std::string remember_choice(const std::string& dir, const std::string& key,
                            const CachedChoice& choice) {
  if (dir.empty()) return "";
  static std::atomic<unsigned> counter{0};
  const auto path = entry_path(dir, key);
  const auto temporary =
      path.parent_path() / ("." + path.filename().string() + "." + std::to_string(getpid()) + "." +
                            std::to_string(counter++) + ".tmp");
  std::error_code error;
  std::filesystem::create_directories(path.parent_path(), error);
  if (error) return "cannot create " + path.parent_path().string() + ": " + error.message();
  {
    std::ofstream file(temporary);
    file << nlohmann::json{{"key", key}, {"variant", choice.variant}, {"timings", choice.timings}}
                .dump(2)
         << "\n";
    file.close();
    if (!file) {
      std::filesystem::remove(temporary, error);
      return "cannot write " + temporary.string() + ": " + std::strerror(errno);
    }
  }
  std::filesystem::rename(temporary, path, error);
  if (error) {
    std::filesystem::remove(temporary, error);
    return "cannot write " + path.string() + ": " + error.message();
  }
  return "";
}

}  // namespace tsnative

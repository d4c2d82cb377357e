// Helpers shared by the core's unit tests: a temporary directory per test, TorchScript modules
// built and saved from C++ (no Python), raw file access, and a check for typed errors with
// their message.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <typeinfo>
#include <utility>
#include <vector>

#include <c10/util/Type.h>
#include <gtest/gtest.h>
#include <torch/csrc/jit/frontend/resolver.h>
#include <torch/csrc/jit/frontend/sugared_value.h>
#include <torch/csrc/jit/ir/constants.h>
#include <torch/script.h>

namespace tsnative_test {

// A fresh, uniquely named directory under the system temp dir, removed with everything in it
// when the object goes away.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    std::random_device random;
    const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    const std::string name = "tsnative_test_" + std::to_string(now) + "_" +
                             std::to_string(random()) + "_" + std::to_string(counter++);
    path_ = std::filesystem::temp_directory_path() / name;
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }

  // The path of `name` inside the directory (the file itself is not created).
  std::string file(const std::string& name) const { return (path_ / name).string(); }

  // Writes `bytes` (or text) to a file of that name in the directory; returns its path.
  std::string write(const std::string& name, const std::vector<uint8_t>& bytes) const {
    const std::string path = file(name);
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
    return path;
  }
  std::string write(const std::string& name, const std::string& text) const {
    return write(name, std::vector<uint8_t>(text.begin(), text.end()));
  }

 private:
  std::filesystem::path path_;
};

// Base fixture: every test gets its own temporary directory in `tmp_`.
class TempDirTest : public ::testing::Test {
 protected:
  TempDir tmp_;
};

inline std::vector<char> read_bytes(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  return std::vector<char>((std::istreambuf_iterator<char>(file)),
                           std::istreambuf_iterator<char>());
}

inline void write_bytes(const std::string& path, const std::vector<char>& bytes) {
  std::ofstream file(path, std::ios::binary);
  file.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(file.good()) << "cannot write " << path;
}

// `ValueError("...")` etc. in define()'d source, compiled the way torch.jit.script compiles
// Python's built-in exceptions: prim::RaiseException(message, "builtins.ValueError").
struct BuiltinException : torch::jit::SugaredValue {
  explicit BuiltinException(std::string name) : name(std::move(name)) {}
  std::string kind() const override { return "builtin exception"; }
  std::shared_ptr<torch::jit::SugaredValue> call(const torch::jit::SourceRange& loc,
                                                 torch::jit::GraphFunction& function,
                                                 at::ArrayRef<torch::jit::NamedValue> args,
                                                 at::ArrayRef<torch::jit::NamedValue> /*kwargs*/,
                                                 size_t /*n_binders*/) override {
    auto& graph = *function.graph();
    torch::jit::Value* message =
        args.empty() ? torch::jit::insertConstant(graph, std::string(), loc) : args[0].value(graph);
    return std::make_shared<torch::jit::ExceptionMessageValue>(
        message, torch::jit::insertConstant(graph, "builtins." + name, loc));
  }
  std::string name;
};

// The C++ define() only knows `torch`; this also knows Python's built-in exceptions.
struct ScriptResolver : torch::jit::Resolver {
  std::shared_ptr<torch::jit::SugaredValue> resolveValue(
      const std::string& name, torch::jit::GraphFunction& /*function*/,
      const torch::jit::SourceRange& /*loc*/) override {
    if (name == "torch") return std::make_shared<torch::jit::BuiltinModule>("aten");
    if (name == "ValueError" || name == "RuntimeError" || name == "TypeError") {
      return std::make_shared<BuiltinException>(name);
    }
    return nullptr;
  }
  c10::TypePtr resolveType(const std::string& /*name*/,
                           const torch::jit::SourceRange& /*loc*/) override {
    return nullptr;
  }
};

// Defines the TorchScript `source` on `module`; Python's built-in exceptions can be raised.
inline void define(torch::jit::Module& module, const std::string& source) {
  module.define(source, std::make_shared<ScriptResolver>());
}

// An empty TorchScript module of class `name`. Like a freshly built nn.Module it has
// `training` = True, so a loader has to switch it to eval mode. Register parameters, buffers
// and submodules on it first, then define() its methods.
inline torch::jit::Module new_module(const std::string& name) {
  torch::jit::Module module(name);
  module.register_attribute("training", c10::BoolType::get(), true);
  return module;
}

// A module of class `name` whose methods are the TorchScript `source`.
inline torch::jit::Module make_module(const std::string& source, const std::string& name = "M") {
  auto module = new_module(name);
  define(module, source);
  return module;
}

// Saves `module` as a TorchScript archive at `path` (what torch.jit.save writes) and returns
// the path.
inline std::string save_module(const torch::jit::Module& module, const std::string& path) {
  module.save(path);
  return path;
}

// The module most tests use: forward(x) = x @ w + 1 with w = [[1, 2], [3, 4]] (requiring grad,
// like a trained parameter), plus scale(x, factor) and add_one(n).
inline torch::jit::Module make_linear_module() {
  auto module = new_module("Linear");
  module.register_parameter("w", torch::tensor({{1.0f, 2.0f}, {3.0f, 4.0f}}).requires_grad_(),
                            /*is_buffer=*/false);
  define(module, R"JIT(
def scale(self, x: Tensor, factor: float) -> Tensor:
    return x * factor

def forward(self, x: Tensor) -> Tensor:
    return torch.mm(x, self.w) + 1

def add_one(self, n: int) -> int:
    return n + 1
)JIT");
  return module;
}

// Passes if `f()` throws exactly an `E` (not a subclass, not another type) whose message
// contains every one of `parts`; otherwise the failure says what happened instead.
template <typename E, typename F>
::testing::AssertionResult ThrowsWith(F&& f, std::initializer_list<std::string> parts) {
  const std::string expected_type = c10::demangle(typeid(E).name());
  try {
    f();
  } catch (const std::exception& e) {
    const std::string message = e.what();
    if (typeid(e) != typeid(E)) {
      return ::testing::AssertionFailure()
             << "threw " << c10::demangle(typeid(e).name()) << " instead of " << expected_type
             << ": \"" << message << "\"";
    }
    for (const auto& part : parts) {
      if (message.find(part) == std::string::npos) {
        return ::testing::AssertionFailure() << expected_type << " message \"" << message
                                             << "\" does not contain \"" << part << "\"";
      }
    }
    return ::testing::AssertionSuccess() << expected_type << ": \"" << message << "\"";
  } catch (...) {
    return ::testing::AssertionFailure() << "threw something that is not a std::exception";
  }
  return ::testing::AssertionFailure() << "threw nothing; expected " << expected_type;
}

}  // namespace tsnative_test

// The error types every layer agrees on. The core throws only these; the Python binding maps
// each to one exception class and ts-infer's main turns them into one line on stderr.
#pragma once

#include <filesystem>
#include <stdexcept>
#include <string>

namespace tsnative {

// A path or name as error messages show it: in single quotes.
inline std::string quoted(const std::string& text) { return "'" + text + "'"; }

// Why `path` cannot be read as a file ("no such file", "it is a directory"); "" if it can.
// Only regular files (or links to one) can: opening a FIFO blocks until a writer comes.
inline std::string file_problem(const std::string& path) {
  std::error_code error;
  const auto status = std::filesystem::status(path, error);
  if (!std::filesystem::exists(status)) return "no such file";
  if (std::filesystem::is_directory(status)) return "it is a directory";
  if (!std::filesystem::is_regular_file(status)) {
    return "it is not a regular file (a FIFO, socket or device)";
  }
  return "";
}

// The first line of `text`, leading blank lines skipped: LibTorch messages often carry a whole
// graph or backtrace after it.
inline std::string first_line(const std::string& text) {
  const auto start = text.find_first_not_of(" \t\r\n");
  if (start == std::string::npos) return "";
  return text.substr(start, text.find('\n', start) - start);
}

// `text` as printable UTF-8 on one line: valid UTF-8 is kept, anything else (bytes that are
// not UTF-8, control characters, C1 controls) becomes \xNN. Messages quote what files hold
// (tokens, names, paths), and a corrupt file must not make stderr or a Python str undecodable.
std::string printable(const std::string& text);

// Base of every error the core throws. Its message is made printable here, the one place.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(printable(message)) {}
};

// The model file could not be loaded: missing, not TorchScript, too new, bad device.
class LoadError : public Error {
 public:
  using Error::Error;
};

// The file is a model, of a format this core does not run (ONNX: through the Python API).
class UnsupportedFormatError : public LoadError {
 public:
  using LoadError::LoadError;
};

// Running a method failed: unknown method, an exception raised inside the model, ...
class InferenceError : public Error {
 public:
  using Error::Error;
};

// The arguments do not match the method's signature (count or types).
class ArgumentError : public InferenceError {
 public:
  using InferenceError::InferenceError;
};

// An input file (tensor or image) could not be read or decoded.
class InputError : public Error {
 public:
  using Error::Error;
};

// An option has a value the core cannot use (a malformed device string, k < 1, ...).
class OptionError : public Error {
 public:
  using Error::Error;
};

}  // namespace tsnative

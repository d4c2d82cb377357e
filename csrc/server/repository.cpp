#include "server/repository.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <tuple>

#include "core/errors.h"

namespace tsnative::server {

namespace {

namespace fs = std::filesystem;

bool is_model_file(const fs::path& path) {
  const auto suffix = path.extension().string();
  return (suffix == ".pt" || suffix == ".pt2") && fs::is_regular_file(path);
}

bool is_version(const std::string& name) {
  return !name.empty() && name.size() < 10 &&
         std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Names that sit in a URL path segment as they are.
void check_name(const std::string& name, const fs::path& where) {
  const bool usable =
      !name.empty() && name[0] != '.' && std::all_of(name.begin(), name.end(), [](unsigned char c) {
        return std::isalnum(c) || c == '_' || c == '-' || c == '.';
      });
  if (!usable) {
    throw OptionError("cannot serve " + tsnative::quoted(where.string()) + ": its model name " +
                      tsnative::quoted(name) + " must be letters, digits, '_', '-' and '.'");
  }
}

std::string onnx_line(const fs::path& path) {
  return tsnative::quoted(path.string()) +
         " is an ONNX model, not served: the server runs TorchScript (.pt) and AOTInductor "
         "(.pt2) files natively; ONNX models run from Python (tsnative.load)";
}

std::string config_beside(const fs::path& path) {
  return fs::is_regular_file(path) ? path.string() : "";
}

}  // namespace

std::vector<ModelSource> find_models(const std::string& path, std::vector<std::string>& skipped) {
  const fs::path root(path);
  std::error_code error;
  const auto status = fs::status(root, error);
  if (!fs::exists(status))
    throw OptionError("cannot serve " + tsnative::quoted(path) + ": no such file");
  std::vector<ModelSource> models;
  if (fs::is_regular_file(status)) {
    if (root.extension() == ".onnx") throw OptionError("cannot serve " + onnx_line(root));
    const auto name = root.stem().string();
    check_name(name, root);
    const auto config = root.parent_path() / (name + ".json");
    return {{name, "1", path, config_beside(config)}};
  }
  if (!fs::is_directory(status)) {
    throw OptionError("cannot serve " + tsnative::quoted(path) + ": not a model file or a folder");
  }
  std::vector<fs::path> entries;
  for (const auto& entry : fs::directory_iterator(root, error)) entries.push_back(entry.path());
  if (error)
    throw OptionError("cannot read the folder " + tsnative::quoted(path) + ": " + error.message());
  for (const auto& entry : entries) {
    const auto name = entry.filename().string();
    if (is_model_file(entry)) {
      check_name(entry.stem().string(), entry);
      models.push_back({entry.stem().string(), "1", entry.string(),
                        config_beside(root / (entry.stem().string() + ".json"))});
    } else if (entry.extension() == ".onnx") {
      skipped.push_back(onnx_line(entry));
    } else if (fs::is_directory(entry) && name[0] != '.') {
      // Triton's layout: NAME/VERSION/model.pt (or .pt2), NAME/config.json.
      for (const auto& version : fs::directory_iterator(entry, error)) {
        if (!version.is_directory() || !is_version(version.path().filename().string())) continue;
        for (const char* file : {"model.pt", "model.pt2"}) {
          const auto model = version.path() / file;
          if (!is_model_file(model)) continue;
          check_name(name, entry);
          models.push_back({name, version.path().filename().string(), model.string(),
                            config_beside(entry / "config.json")});
        }
        if (fs::exists(version.path() / "model.onnx")) {
          skipped.push_back(onnx_line(version.path() / "model.onnx"));
        }
      }
    }
  }
  if (models.empty()) {
    throw OptionError("cannot serve " + tsnative::quoted(path) +
                      ": it holds no model (.pt or .pt2 files, or NAME/VERSION/model.pt)");
  }
  std::sort(models.begin(), models.end(), [](const ModelSource& a, const ModelSource& b) {
    return std::make_tuple(a.name, std::stoull(a.version)) <
           std::make_tuple(b.name, std::stoull(b.version));
  });
  for (size_t i = 1; i < models.size(); ++i) {
    if (models[i].name == models[i - 1].name && models[i].version == models[i - 1].version) {
      throw OptionError("cannot serve " + tsnative::quoted(path) + ": two models are named " +
                        tsnative::quoted(models[i].name) + " (version " + models[i].version + ")");
    }
  }
  return models;
}

}  // namespace tsnative::server

// What `ts-infer serve PATH` serves: one model file (named by its stem), a flat folder of
// model files (each by its stem), or a Triton-style repository (REPO/NAME/VERSION/model.pt or
// model.pt2). Found once, at start; a request's model name is only ever looked up among these,
// never turned into a path.
#pragma once

#include <string>
#include <vector>

namespace tsnative::server {

struct ModelSource {
  std::string name;
  std::string version;  // "1" for a file outside a versioned layout
  std::string path;
  std::string config;  // the model's config file, "" if it has none
};

// The models under `path`, sorted by name then version (numerically). A model's config is
// NAME/config.json in a Triton-style layout, STEM.json beside a file. ONNX files are not
// served (they run through Python): `skipped` gets a line for each in a folder; a single
// ONNX file is an OptionError. Throws OptionError: no such path, a folder with no model, a
// name the protocol's URLs cannot carry.
std::vector<ModelSource> find_models(const std::string& path, std::vector<std::string>& skipped);

}  // namespace tsnative::server

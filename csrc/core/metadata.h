// The JSON metadata a model archive carries next to its code (TorchScript's extra files):
// class labels, image preprocessing, the example input shape. tsnative.export writes it;
// Model::load reads it. This file owns the format, for both directions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/image.h"

namespace tsnative {

struct Metadata {
  std::vector<std::string> labels;       // class names by index; empty if none
  std::optional<Preprocess> preprocess;  // how images are turned into the model's input
  std::vector<int64_t> input_shape;      // shape of the example input; empty if unknown
  std::string input_dtype;               // its dtype ("float32", "int64"); empty if unknown
  std::string tsnative_version;          // version that wrote the file
  std::string export_method;             // "script" or "trace"
  // How the weights and activations were quantized ("int8: PT2E ..."); empty if not.
  std::string quantization;
};

// Name of the metadata file inside the archive (under extra/).
inline constexpr const char* kMetadataFile = "tsnative.json";

// Parses metadata JSON; `source` names the archive in error messages (a quoted path, or a
// description of what was loaded from memory). Throws LoadError.
Metadata parse_metadata(const std::string& json, const std::string& source);

// Serializes metadata to the JSON that parse_metadata reads.
std::string to_json(const Metadata& metadata);

// Reads class labels from a text file, one per line. Throws InputError.
std::vector<std::string> read_labels(const std::string& path);

// The 1000 ImageNet-1k class names (torchvision's spelling), built into the library.
const std::vector<std::string>& imagenet_labels();

// Labels from "imagenet" (the built-in list) or a text file path.
std::vector<std::string> resolve_labels(const std::string& spec);

}  // namespace tsnative

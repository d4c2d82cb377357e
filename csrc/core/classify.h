// Image classification end to end: files -> decoded, preprocessed batches -> the model ->
// softmax top-k -> labelled predictions. Both front ends (ts-infer, tsnative.classify) call
// this; they only render results and progress.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/image.h"
#include "core/model.h"
#include "core/postprocess.h"

namespace tsnative {

struct Prediction {
  int64_t index;
  double probability;
  std::string label;  // empty when the model has no labels
};

struct Classification {
  std::string path;
  std::vector<Prediction> predictions;  // best first; empty when error is set
  std::string error;                    // why this file could not be classified
  bool ok() const { return error.empty(); }
};

// Overrides of what the model's metadata says: preprocessing fields that are set replace the
// metadata's (or, for a model without, the ImageNet defaults of Preprocess).
struct ClassifyOptions {
  std::optional<int64_t> k;  // unset: softmax_topk's default
  int64_t batch_size = 16;
  PreprocessOverrides preprocess;
  std::optional<std::vector<std::string>> labels;
  DecodeLimits limits;
};

// Called after each batch with that batch's results, labelled, in file order (so a front end
// can show each as it is known), and how many files are done of how many. It may throw to
// stop the run (an interrupt): classify lets the exception through, with nothing written.
using ProgressCallback =
    std::function<void(const std::vector<Classification>& batch, size_t done, size_t total)>;

// Runs a batch of preprocessed images (NCHW) through a model: its output, a tensor of class
// scores with one row per image (anything else is an InferenceError that names it).
using BatchRunner = std::function<c10::IValue(const at::Tensor& batch)>;

// The JPEG and PNG files directly inside `dir` (by extension, any case), sorted by name.
// Throws InputError if `dir` is not a readable directory.
std::vector<std::string> list_images(const std::string& dir);

// Expands each path: a directory becomes the images inside it, a file stays as it is. Throws
// InputError if paths were given but none is or holds an image (empty folders).
std::vector<std::string> expand_image_paths(const std::vector<std::string>& paths);

// Labels each row of a top-k result; labels may be empty (then so is every label). Throws
// InputError if there are labels but not one per class: names shifted by a line would be
// wrong for every image, with nothing to show it.
std::vector<std::vector<Prediction>> to_predictions(const TopK& top,
                                                    const std::vector<std::string>& labels);

// The preprocessing classify() applies: the model's (or ImageNet's) with `overrides` on top.
Preprocess preprocessing_for(const Metadata& metadata, const PreprocessOverrides& overrides);

// Classifies files in batches (images of different sizes, possible without a crop, go through
// the model in separate groups). A file that cannot be read is reported in its result and
// skipped; errors of the model itself (InferenceError) propagate.
std::vector<Classification> classify(const Model& model, const std::vector<std::string>& paths,
                                     const ClassifyOptions& options = {},
                                     const ProgressCallback& progress = {});

// The same for a model that runs elsewhere (an ONNX Runtime session, from the Python API):
// `run` gets each batch, `metadata` is the model's (labels, preprocessing).
std::vector<Classification> classify(const BatchRunner& run, const Metadata& metadata,
                                     const std::vector<std::string>& paths,
                                     const ClassifyOptions& options = {},
                                     const ProgressCallback& progress = {});

}  // namespace tsnative

#include "core/classify.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <map>

#include <ATen/ATen.h>

#include "core/errors.h"

namespace tsnative {
namespace {

bool has_image_extension(const std::filesystem::path& path) {
  std::string extension = path.extension().string();
  std::transform(extension.begin(), extension.end(), extension.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return extension == ".jpg" || extension == ".jpeg" || extension == ".png";
}

void check_label_count(const std::vector<std::string>& labels, int64_t classes) {
  if (!labels.empty() && static_cast<int64_t>(labels.size()) != classes) {
    throw InputError("the labels do not match the model: " + std::to_string(labels.size()) +
                     " labels for " + std::to_string(classes) +
                     " classes (one label per line of the labels file, one per class)");
  }
}

// Names each prediction by its class (nothing where there are no labels; their count was
// checked against the classes).
void apply_labels(std::vector<Classification>& results, const std::vector<std::string>& labels) {
  if (labels.empty()) return;
  for (auto& result : results) {
    for (auto& prediction : result.predictions) {
      prediction.label = labels[static_cast<size_t>(prediction.index)];
    }
  }
}

}  // namespace

std::vector<std::string> list_images(const std::string& dir) {
  std::error_code error;
  std::filesystem::directory_iterator entries(dir, error);
  if (error) {
    throw InputError("cannot list images in '" + dir + "': " + error.message());
  }
  std::vector<std::string> paths;
  for (const auto& entry : entries) {
    if (entry.is_regular_file(error) && has_image_extension(entry.path())) {
      paths.push_back(entry.path().string());
    }
  }
  std::sort(paths.begin(), paths.end());
  return paths;
}

std::vector<std::string> expand_image_paths(const std::vector<std::string>& paths) {
  std::vector<std::string> files;
  for (const auto& path : paths) {
    std::error_code error;
    if (std::filesystem::is_directory(path, error)) {
      const auto inside = list_images(path);
      files.insert(files.end(), inside.begin(), inside.end());
    } else {
      files.push_back(path);
    }
  }
  if (files.empty() && !paths.empty()) {
    std::string given;
    for (const auto& path : paths) given += (given.empty() ? "'" : ", '") + path + "'";
    throw InputError("no JPEG or PNG images found in " + given);
  }
  return files;
}

std::vector<std::vector<Prediction>> to_predictions(const TopK& top,
                                                    const std::vector<std::string>& labels) {
  check_label_count(labels, top.classes);
  const auto k = top.indices.size(-1);
  const auto probabilities = top.probabilities.to(at::kCPU, at::kDouble).reshape({-1, k});
  const auto indices = top.indices.to(at::kCPU).reshape({-1, k});
  std::vector<std::vector<Prediction>> rows(static_cast<size_t>(indices.size(0)));
  for (int64_t row = 0; row < indices.size(0); ++row) {
    for (int64_t i = 0; i < k; ++i) {
      const int64_t index = indices[row][i].item<int64_t>();
      rows[row].push_back(Prediction{index, probabilities[row][i].item<double>(),
                                     labels.empty() ? "" : labels[static_cast<size_t>(index)]});
    }
  }
  return rows;
}

Preprocess preprocessing_for(const Metadata& metadata, const PreprocessOverrides& overrides) {
  return apply_overrides(metadata.preprocess.value_or(Preprocess{}), overrides);
}

std::vector<Classification> classify(const Model& model, const std::vector<std::string>& paths,
                                     const ClassifyOptions& options,
                                     const ProgressCallback& progress) {
  const auto run = [&model](const at::Tensor& batch) { return model.forward({batch}); };
  return classify(run, model.metadata(), paths, options, progress);
}

std::vector<Classification> classify(const BatchRunner& run, const Metadata& metadata,
                                     const std::vector<std::string>& paths,
                                     const ClassifyOptions& options,
                                     const ProgressCallback& progress) {
  if (options.batch_size < 1) {
    throw OptionError("batch size must be at least 1, got " + std::to_string(options.batch_size));
  }
  const Preprocess preprocess = preprocessing_for(metadata, options.preprocess);
  const auto& labels = options.labels ? *options.labels : metadata.labels;

  // Every result is allocated at the start, its predictions once the first batch tells how
  // many classes there are: what outlives a batch then never sits between the blocks that
  // images and tensors free after it, and the allocator reuses those for the next batch
  // (results allocated batch by batch fragmented the heap: 10,000 images took 2.5x the memory
  // of 1,000).
  std::vector<Classification> results(paths.size());
  for (size_t i = 0; i < paths.size(); ++i) results[i].path = paths[i];
  bool reserved = false;
  const auto batch_size = static_cast<size_t>(options.batch_size);
  for (size_t start = 0; start < paths.size(); start += batch_size) {
    const size_t end = std::min(paths.size(), start + batch_size);
    std::vector<at::Tensor> images;
    std::vector<size_t> slots;
    for (size_t i = start; i < end; ++i) {
      try {
        images.push_back(load_image(paths[i], preprocess, options.limits));
        slots.push_back(i);
      } catch (const InputError& e) {  // a bad file is skipped; bad options are not
        results[i].error = e.what();
      }
    }
    // One forward call per image size in the batch: all of them when every image is cropped.
    std::map<std::vector<int64_t>, std::vector<size_t>> by_size;
    for (size_t j = 0; j < images.size(); ++j) by_size[images[j].sizes().vec()].push_back(j);
    for (const auto& [size, members] : by_size) {
      std::vector<at::Tensor> group;
      for (const size_t j : members) group.push_back(images[j]);
      const auto top = softmax_topk(run(at::stack(group)), options.k);
      check_label_count(labels, top.classes);
      if (!reserved) {
        const auto k = static_cast<size_t>(top.indices.size(-1));
        for (auto& result : results) result.predictions.reserve(k);
        reserved = true;
      }
      const auto rows = to_predictions(top, {});  // labelled after the last batch
      for (size_t g = 0; g < members.size(); ++g) {
        auto& predictions = results[slots[members[g]]].predictions;
        predictions.assign(rows[g].begin(), rows[g].end());  // into the reserved storage
      }
    }
    if (progress) {
      // A labelled copy of the batch, freed before the next: the results themselves get their
      // labels after the last batch, so that no label outlives a batch between its buffers.
      std::vector<Classification> batch(results.begin() + static_cast<std::ptrdiff_t>(start),
                                        results.begin() + static_cast<std::ptrdiff_t>(end));
      apply_labels(batch, labels);
      progress(batch, end, paths.size());
    }
  }
  apply_labels(results, labels);
  return results;
}

}  // namespace tsnative

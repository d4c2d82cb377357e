// ts-infer: the C++ tutorial's program grown into a tool. Flags in, one core call chain,
// lines or JSON out. Exit codes: 0 success, 1 load / input / inference error, 2 usage error
// (an ONNX model included: those run from the Python API).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <iomanip>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "cli/output.h"
#include "cli/serve.h"
#include "core/classify.h"
#include "core/errors.h"
#include "core/metadata.h"
#include "core/model.h"
#include "core/postprocess.h"
#include "core/runtime.h"
#include "core/script_object.h"
#include "core/tensor_io.h"

namespace {

using tsnative::cli::describe;
using tsnative::cli::to_json;

struct Options {
  std::string model;
  std::vector<std::string> images;
  std::string labels;
  tsnative::PreprocessOverrides preprocess;  // resize and crop; the rest is filled in below
  std::vector<double> mean, std;
  std::string color;
  int64_t batch_size = 16;
  std::vector<std::string> inputs;
  std::vector<int64_t> shape;  // empty: the shape the model records, else kTutorialShape
  bool ones = false;
  std::optional<uint64_t> seed;
  std::optional<int64_t> k;  // unset: 5, or every class where there are fewer
  std::string method = "forward";
  std::optional<int> threads;
  std::vector<std::string> libraries;
  tsnative::LoadOptions load;
  bool json = false;
  bool raw = false;
  std::string save_output;
  std::string optimize = "none";
  int64_t repeat = 0;
};

// CLI11's PositiveNumber states its range as a 300-digit double; say what is meant instead.
const CLI::Validator kAtLeastOne(
    [](std::string& value) -> std::string {
      try {
        if (std::stoll(value) >= 1) return "";
      } catch (const std::exception&) {
        return "expected a whole number, got '" + value + "'";
      }
      return "must be at least 1, got " + value;
    },
    "N>=1");

void add_flags(CLI::App& app, Options& options) {
  app.add_option("model", options.model,
                 "TorchScript file (.pt, torch.jit.save) or AOTInductor package (.pt2)")
      ->required();
  auto* images = app.add_option("images", options.images,
                                "Images (JPEG, PNG) or folders of them to classify, preprocessed "
                                "as the model's metadata says unless the flags below override it");
  auto* input = app.add_option("--input", options.inputs,
                               "Tensor file written by torch.save, one per method argument "
                               "(repeat the flag for several); read without running pickled code")
                    ->take_all()
                    ->excludes(images);
  app.add_option("--shape", options.shape,
                 "Shape of the generated input, e.g. 1,3,224,224 (default: the input shape the "
                 "export recorded in the model, else 1,3,224,224)")
      ->delimiter(',')
      ->check(kAtLeastOne)
      ->excludes(input)
      ->excludes(images);
  app.add_flag("--ones", options.ones, "Use an all-ones input instead of uniform random [0, 1)")
      ->excludes(input)
      ->excludes(images);
  app.add_option("--seed", options.seed, "Seed for the random input (LibTorch's default if unset)")
      ->excludes(input)
      ->excludes(images);
  app.add_option("-k,--topk", options.k,
                 "How many classes to show (default: 5, or every class where there are fewer)")
      ->check(kAtLeastOne);
  app.add_option("--device", options.load.device, "cpu, cuda or cuda:N")->capture_default_str();
  app.add_option("--threads", options.threads, "Intra-op threads (LibTorch's default if unset)")
      ->check(kAtLeastOne);
  app.add_option("--load-library", options.libraries,
                 "A shared library registering TorchScript operators the model calls "
                 "(TORCH_LIBRARY); repeat for several, loaded in order before the model")
      ->type_name("FILE");
  app.add_option("--method", options.method, "Model method to run")->capture_default_str();
  std::string levels;
  for (const auto& level : tsnative::optimize_levels()) {
    levels += (levels.empty() ? "" : "; ") + level.name + ": " + level.summary;
  }
  app.add_option("--optimize", options.optimize, levels)
      ->check(CLI::IsMember(tsnative::optimize_level_names()))
      ->capture_default_str();
  app.add_option("--cache-dir", options.load.choice_cache_dir,
                 "Where the variant --optimize chose is remembered, so that the next run on the "
                 "same model and input shapes skips the timing ('' remembers nothing; default: "
                 "$TSNATIVE_CACHE_DIR, else ~/.cache/tsnative)")
      ->type_name("DIR");
  app.add_option("--repeat", options.repeat,
                 "Run forward N more times and report the median and p90 latency")
      ->check(kAtLeastOne)
      ->excludes(images);
  app.add_flag("--json", options.json, "Print one JSON object instead of text");
  app.add_flag("--raw", options.raw,
               "Print the output's values, not softmax top-k (the default for an output that "
               "is not class scores: a probability, an embedding, a tuple or dict)")
      ->excludes(images);
  app.add_option("--save-output", options.save_output,
                 "Also write the raw output to FILE, readable with torch.load")
      ->excludes(images);

  const std::string image_flags = "Images";
  app.add_option("--labels", options.labels,
                 "Class names: a text file (one per line) or 'imagenet'")
      ->group(image_flags);
  app.add_option("--resize", options.preprocess.resize, "Resize the shorter side to N (0: keep)")
      ->group(image_flags);
  app.add_option("--crop", options.preprocess.crop, "Centre crop N x N (0: none)")
      ->group(image_flags);
  app.add_option("--mean", options.mean, "Per-channel mean, e.g. 0.485,0.456,0.406")
      ->delimiter(',')
      ->group(image_flags);
  app.add_option("--std", options.std, "Per-channel std, e.g. 0.229,0.224,0.225")
      ->delimiter(',')
      ->group(image_flags);
  app.add_option("--color", options.color, "rgb or grayscale")
      ->check(CLI::IsMember({"rgb", "grayscale"}))
      ->group(image_flags);
  app.add_option("--batch-size", options.batch_size, "Images per forward call")
      ->check(kAtLeastOne)
      ->capture_default_str()
      ->group(image_flags);
}

// The tutorial's input, for a model that records no input shape.
const std::vector<int64_t> kTutorialShape{1, 3, 224, 224};

// The arguments to run the method with: the --input files, or a random (or --ones) tensor of
// `shape`.
std::vector<c10::IValue> make_inputs(const Options& options, const std::vector<int64_t>& shape) {
  std::vector<c10::IValue> inputs;
  if (!options.inputs.empty()) {
    for (const auto& path : options.inputs) {
      inputs.push_back(tsnative::load_value(path));
    }
    return inputs;
  }
  if (options.seed) {
    at::manual_seed(*options.seed);
  }
  inputs.push_back(options.ones ? at::ones(shape) : at::rand(shape));
  return inputs;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string text;
  for (const auto size : shape) text += (text.empty() ? "" : "x") + std::to_string(size);
  return text;
}

double milliseconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

void print_tensor_result(const std::vector<std::vector<tsnative::Prediction>>& rows) {
  for (size_t row = 0; row < rows.size(); ++row) {
    if (rows.size() > 1) std::cout << "input " << row << ":\n";
    for (const auto& prediction : rows[row]) {
      std::cout << "  " << describe(prediction) << "\n";
    }
  }
}

// Ctrl-C during a folder run: the run stops after the batch in hand, with every result
// before it already printed; a second Ctrl-C ends the process at once.
volatile std::sig_atomic_t interrupt_requested = 0;

extern "C" void request_interrupt(int signal_number) {
  if (interrupt_requested) {
    std::signal(signal_number, SIG_DFL);
    std::raise(signal_number);
  }
  interrupt_requested = 1;
}

struct Interrupted {
  size_t done, total;
};

// One result as it is printed: a JSON line, or the path (when there are several) and its
// predictions. A file that could not be read goes to stderr as well.
void print_classification(const tsnative::Classification& result, bool json, bool with_path) {
  if (!result.ok()) std::cerr << "ts-infer: skipped: " << result.error << std::endl;
  if (json) {
    const auto line = result.ok() ? nlohmann::json{{"path", result.path},
                                                   {"predictions", to_json(result.predictions)}}
                                  : nlohmann::json{{"path", result.path}, {"error", result.error}};
    std::cout << line.dump() << "\n";
    return;
  }
  if (!result.ok()) return;
  if (with_path) std::cout << result.path << "\n";
  for (const auto& prediction : result.predictions) {
    std::cout << (with_path ? "  " : "") << describe(prediction) << "\n";
  }
}

int classify_images(const Options& options, const tsnative::Model& model) {
  tsnative::ClassifyOptions classify_options;
  classify_options.k = options.k;
  classify_options.batch_size = options.batch_size;
  classify_options.preprocess = options.preprocess;
  if (!options.mean.empty()) classify_options.preprocess.mean = options.mean;
  if (!options.std.empty()) classify_options.preprocess.std = options.std;
  if (!options.color.empty()) {
    classify_options.preprocess.color = tsnative::parse_color_mode(options.color);
  }
  if (!options.labels.empty()) classify_options.labels = tsnative::resolve_labels(options.labels);

  const auto files = tsnative::expand_image_paths(options.images);
  const bool several = files.size() > 1;
  const bool show_progress = isatty(STDERR_FILENO) && several;
  const auto start = std::chrono::steady_clock::now();
  size_t failed = 0;
  // Each batch's results are printed (and flushed) as soon as they are known, in order: an
  // interrupted or crashed run keeps what it had done.
  const auto on_batch = [&](const std::vector<tsnative::Classification>& batch, size_t done,
                            size_t total) {
    if (show_progress) std::cerr << "\r\033[K" << std::flush;
    for (const auto& result : batch) {
      failed += result.ok() ? 0 : 1;
      print_classification(result, options.json, several);
    }
    std::cout << std::flush;
    if (interrupt_requested) throw Interrupted{done, total};
    if (show_progress) std::cerr << "classifying " << done << "/" << total << std::flush;
  };
  std::signal(SIGINT, request_interrupt);
  tsnative::classify(model, files, classify_options, on_batch);
  std::signal(SIGINT, SIG_DFL);
  if (show_progress) std::cerr << "\r\033[K" << std::flush;
  if (several) {
    std::cerr << "classified " << files.size() - failed << " of " << files.size() << " images in "
              << std::fixed << std::setprecision(2) << milliseconds_since(start) / 1000.0 << " s"
              << (failed ? " (" + std::to_string(failed) + " skipped)" : "") << std::endl;
  }
  return failed ? 1 : 0;
}

// Milliseconds of `repeat` more calls: {median, p90}.
std::pair<double, double> time_repeats(const tsnative::Model& model, const Options& options,
                                       const std::vector<c10::IValue>& inputs) {
  std::vector<double> times;
  for (int64_t i = 0; i < options.repeat; ++i) {
    const auto start = std::chrono::steady_clock::now();
    model.run(options.method, inputs);
    times.push_back(milliseconds_since(start));
  }
  std::sort(times.begin(), times.end());
  const auto at = [&times](double q) {
    return times[static_cast<size_t>(q * static_cast<double>(times.size() - 1) + 0.5)];
  };
  return {at(0.5), at(0.9)};
}

int run(const Options& options) {
  if (options.threads) tsnative::set_num_threads(*options.threads);
  for (const auto& library : options.libraries) tsnative::load_library(library);
  auto load_options = options.load;
  load_options.optimize = tsnative::parse_optimize_level(options.optimize);
  if (!options.images.empty()) {
    return classify_images(options, *tsnative::Model::load(options.model, load_options));
  }
  // Optimized variants are warmed up, and the fastest chosen, on the very input to be run:
  // given here, or, made from the model's recorded shape, at its first call.
  const bool inputs_given = !options.inputs.empty() || !options.shape.empty();
  std::vector<c10::IValue> inputs;
  if (inputs_given) inputs = make_inputs(options, options.shape);
  if (inputs_given && load_options.optimize != tsnative::OptimizeLevel::kNone &&
      options.method == "forward") {
    load_options.warmup_inputs = inputs;
  }
  if (!options.json) std::cout << "Loading model..." << std::endl;
  const auto load_start = std::chrono::steady_clock::now();
  const auto model = tsnative::Model::load(options.model, load_options);
  const double load_ms = milliseconds_since(load_start);
  if (!options.json) std::cout << "Model loaded successfully" << std::endl;

  // A method without arguments gets none; another, an input of the shape the export recorded.
  std::string guessed;  // said with any failure: the input was the tutorial's, not the model's
  if (!inputs_given && !model->signature(options.method).arguments().empty()) {
    auto shape = model->metadata().input_shape;
    if (shape.empty()) {
      shape = kTutorialShape;
      guessed = "ts-infer made a random " + shape_text(shape) +
                " input, as the model records no input shape: give --shape or --input";
    }
    inputs = make_inputs(options, shape);
  }

  const auto forward_start = std::chrono::steady_clock::now();
  c10::IValue output;
  try {
    output = model->run(options.method, inputs);
  } catch (const tsnative::InferenceError& e) {
    if (guessed.empty()) throw;
    throw tsnative::InferenceError(std::string(e.what()) + " (" + guessed + ")");
  }
  const double first_forward_ms = milliseconds_since(forward_start);
  const auto [forward_ms, forward_p90_ms] =
      options.repeat > 0 ? time_repeats(*model, options, inputs)
                         : std::pair<double, double>{first_forward_ms, first_forward_ms};

  if (!options.save_output.empty()) tsnative::save_value(options.save_output, output);
  if (c10::IValue object; tsnative::holds_script_object(output, &object)) {
    throw tsnative::InferenceError(
        options.method + "() returned a " + tsnative::object_type_name(object.toObjectRef()) +
        " object (an instance of a TorchScript class), which ts-infer cannot show: return its "
        "tensors instead, or read it through the Python API (tsnative.ScriptObject)");
  }
  const auto labels =
      options.labels.empty() ? model->metadata().labels : tsnative::resolve_labels(options.labels);
  std::optional<tsnative::TopK> top;
  if (!options.raw && tsnative::is_class_scores(output)) {
    top = tsnative::softmax_topk(output, options.k);
  }

  if (options.json) {
    nlohmann::json report = {{"model", options.model},
                             {"method", options.method},
                             {"device", model->device().str()},
                             {"optimization", model->optimization()},
                             {"load_ms", load_ms},
                             {"first_forward_ms", first_forward_ms},
                             {"forward_ms", forward_ms},
                             {"forward_p90_ms", forward_p90_ms},
                             {"repeat", options.repeat}};
    if (!top) report["output"] = tsnative::cli::value_to_json(output);
    if (top) {
      report["indices"] = nlohmann::json::array();
      report["probabilities"] = nlohmann::json::array();
      for (const auto& row : tsnative::to_predictions(*top, labels)) {
        auto& indices = report["indices"].emplace_back(nlohmann::json::array());
        auto& probabilities = report["probabilities"].emplace_back(nlohmann::json::array());
        for (const auto& prediction : row) {
          indices.push_back(prediction.index);
          probabilities.push_back(prediction.probability);
        }
      }
    }
    std::cout << report.dump() << std::endl;
  } else {
    if (top) print_tensor_result(tsnative::to_predictions(*top, labels));
    if (!top) tsnative::cli::print_value(std::cout, "output", output);
    if (options.repeat > 0) {
      std::cout << "forward: median " << std::fixed << std::setprecision(3) << forward_ms
                << " ms, p90 " << forward_p90_ms << " ms over " << options.repeat << " runs ("
                << model->optimization() << ")\n";
    }
    std::cout << "\nDONE" << std::endl;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // `ts-infer serve ...` is a command of its own, with its own flags.
  if (argc > 1 && std::string(argv[1]) == "serve") {
    return tsnative::cli::serve_main(argc - 1, argv + 1);
  }
  CLI::App app{
      "Run a TorchScript model or AOTInductor package natively: print the top-k classes of its "
      "output (or the output itself, where it is not class scores), or classify images.",
      "ts-infer"};
  app.set_version_flag("--version", std::string("ts-infer ") + TSNATIVE_VERSION + " (LibTorch " +
                                        tsnative::torch_version() + ")");
  app.footer(
      "Serving: ts-infer serve PATH serves models over KServe's Open Inference Protocol v2 "
      "(see ts-infer serve --help).\n");
  Options options;
  add_flags(app, options);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "ts-infer: " << e.what() << " (see ts-infer --help)" << std::endl;
    return 2;
  }
  try {
    return run(options);
  } catch (const Interrupted& e) {
    std::cerr << "ts-infer: interrupted after " << e.done << " of " << e.total
              << " images (their results are above)" << std::endl;
    return 130;  // as a shell reports a command ended by SIGINT
  } catch (const tsnative::OptionError& e) {
    std::cerr << "ts-infer: " << e.what() << std::endl;
    return 2;
  } catch (const tsnative::UnsupportedFormatError& e) {  // a model for another front end
    std::cerr << "ts-infer: " << e.what() << std::endl;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "ts-infer: error: " << e.what() << std::endl;
    return 1;
  } catch (...) {
    std::cerr << "ts-infer: error: unknown failure" << std::endl;
    return 1;
  }
}

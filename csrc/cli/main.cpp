// ts-infer: the C++ tutorial's program grown into a tool. Flags in, one core call chain,
// lines or JSON out. Exit codes: 0 success, 1 load / input / inference error, 2 usage error.
#include <chrono>
#include <cstdint>
#include <iomanip>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "core/errors.h"
#include "core/model.h"
#include "core/postprocess.h"
#include "core/runtime.h"
#include "core/tensor_io.h"

namespace {

struct Options {
  std::string model;
  std::vector<std::string> inputs;
  std::vector<int64_t> shape{1, 3, 224, 224};
  bool ones = false;
  std::optional<uint64_t> seed;
  int64_t k = 5;
  std::string method = "forward";
  std::optional<int> threads;
  tsnative::LoadOptions load;
  bool json = false;
  std::string save_output;
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
  app.add_option("model", options.model, "TorchScript file (torch.jit.save / .save())")->required();
  auto* input = app.add_option("--input", options.inputs,
                               "Tensor file written by torch.save, one per method argument "
                               "(repeat the flag for several); read without running pickled code")
                    ->take_all();
  app.add_option("--shape", options.shape, "Shape of the generated input")
      ->delimiter(',')
      ->check(kAtLeastOne)
      ->capture_default_str()
      ->excludes(input);
  app.add_flag("--ones", options.ones, "Use an all-ones input instead of uniform random [0, 1)")
      ->excludes(input);
  app.add_option("--seed", options.seed, "Seed for the random input (LibTorch's default if unset)")
      ->excludes(input);
  app.add_option("-k,--topk", options.k, "How many classes to show")
      ->check(kAtLeastOne)
      ->capture_default_str();
  app.add_option("--device", options.load.device, "cpu, cuda or cuda:N")->capture_default_str();
  app.add_option("--threads", options.threads, "Intra-op threads (LibTorch's default if unset)")
      ->check(kAtLeastOne);
  app.add_option("--method", options.method, "Model method to run")->capture_default_str();
  app.add_flag("--json", options.json, "Print one JSON object instead of text");
  app.add_option("--save-output", options.save_output,
                 "Also write the raw output to FILE, readable with torch.load");
}

std::vector<c10::IValue> make_inputs(const Options& options) {
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
  inputs.push_back(options.ones ? at::ones(options.shape) : at::rand(options.shape));
  return inputs;
}

double milliseconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

// Rows of the top-k result: every leading dimension flattened, classes last.
std::pair<at::Tensor, at::Tensor> as_rows(const tsnative::TopK& top) {
  const auto k = top.indices.size(-1);
  return {top.probabilities.detach().to(at::kCPU, at::kDouble).reshape({-1, k}),
          top.indices.to(at::kCPU).reshape({-1, k})};
}

void print_text(const tsnative::TopK& top) {
  const auto [probabilities, indices] = as_rows(top);
  const auto rows = indices.size(0);
  for (int64_t row = 0; row < rows; ++row) {
    if (rows > 1) std::cout << "input " << row << ":\n";
    for (int64_t i = 0; i < indices.size(1); ++i) {
      std::cout << std::setw(6) << indices[row][i].item<int64_t>() << "  " << std::fixed
                << std::setprecision(2) << 100.0 * probabilities[row][i].item<double>() << "%\n";
    }
  }
}

nlohmann::json to_json(const tsnative::TopK& top) {
  const auto [probabilities, indices] = as_rows(top);
  nlohmann::json result = {{"indices", nlohmann::json::array()},
                           {"probabilities", nlohmann::json::array()}};
  for (int64_t row = 0; row < indices.size(0); ++row) {
    const auto index_row = indices[row].contiguous();
    const auto probability_row = probabilities[row].contiguous();
    result["indices"].push_back(std::vector<int64_t>(
        index_row.data_ptr<int64_t>(), index_row.data_ptr<int64_t>() + index_row.numel()));
    result["probabilities"].push_back(
        std::vector<double>(probability_row.data_ptr<double>(),
                            probability_row.data_ptr<double>() + probability_row.numel()));
  }
  return result;
}

int run(const Options& options) {
  if (options.threads) tsnative::set_num_threads(*options.threads);
  if (!options.json) std::cout << "Loading model..." << std::endl;
  const auto load_start = std::chrono::steady_clock::now();
  const auto model = tsnative::Model::load(options.model, options.load);
  const double load_ms = milliseconds_since(load_start);
  if (!options.json) std::cout << "Model loaded successfully" << std::endl;

  auto inputs = make_inputs(options);
  const auto forward_start = std::chrono::steady_clock::now();
  const auto output = model->run(options.method, std::move(inputs));
  const double forward_ms = milliseconds_since(forward_start);

  if (!options.save_output.empty()) tsnative::save_value(options.save_output, output);
  // A non-tensor output is fine when it is being saved; otherwise top-k explains the problem.
  const bool show_topk = output.isTensor() || options.save_output.empty();
  std::optional<tsnative::TopK> top;
  if (show_topk) top = tsnative::softmax_topk(output, options.k);

  if (options.json) {
    nlohmann::json report = {{"model", options.model},
                             {"method", options.method},
                             {"device", model->device().str()},
                             {"load_ms", load_ms},
                             {"forward_ms", forward_ms}};
    if (top) report.update(to_json(*top));
    std::cout << report.dump() << std::endl;
  } else {
    if (top) print_text(*top);
    std::cout << "\nDONE" << std::endl;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Run a TorchScript model natively and print the top-k classes of its output.",
               "ts-infer"};
  app.set_version_flag("--version", std::string("ts-infer ") + TSNATIVE_VERSION + " (LibTorch " +
                                        tsnative::torch_version() + ")");
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
  } catch (const tsnative::OptionError& e) {
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

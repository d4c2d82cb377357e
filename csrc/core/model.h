// Model: a model file loaded once, in eval mode, on one device, callable from many threads at
// once. load(path, options) -> run(method, args) -> outputs. What every front end holds,
// whatever the format: a TorchScript archive (.pt: its variants are here and in optimize.h) or
// an AOTInductor package (.pt2: backends/aoti.h), told apart by the file's contents.
#pragma once

#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <ATen/core/function_schema.h>
#include <ATen/core/ivalue.h>
#include <c10/core/Device.h>
#include <caffe2/serialize/read_adapter_interface.h>
#include <torch/csrc/jit/api/module.h>

#include "core/metadata.h"
#include "core/optimize.h"

namespace tsnative {

class AotiPackage;

// How a model is loaded. Front ends fill this from keyword arguments or flags; the defaults
// here are the only defaults.
struct LoadOptions {
  std::string device = "cpu";  // "cpu", "cuda" or "cuda:N"
  OptimizeLevel optimize = OptimizeLevel::kNone;
  // Arguments of forward used to warm the model up inside load (the profiling executor makes
  // the first calls slow) and, with several optimization variants, to time them and keep the
  // fastest. If empty, a random input of the metadata's input_shape is used for image models.
  std::vector<c10::IValue> warmup_inputs;
  int warmup_runs = 3;  // calls before timing; the profiling executor optimizes on the second
  // Where the variant each optimize level chose is remembered, so that loading the same model
  // for the same inputs again skips the timing (see choice_cache.h); "" remembers nothing.
  // Unset: $TSNATIVE_CACHE_DIR, else $XDG_CACHE_HOME/tsnative, else ~/.cache/tsnative.
  std::optional<std::string> choice_cache_dir;
};

class Model {
 public:
  // Loads a TorchScript archive onto options.device, puts it in eval mode, applies
  // options.optimize and warms it up; or an AOTInductor package, which has only forward,
  // takes tensors, and has no optimize levels (Inductor optimized it when it was compiled). With
  // several variants to choose from, the fastest on the warm-up inputs is kept; without warm-up
  // inputs, the first call of forward times them on its arguments (that call takes longer) and
  // keeps the fastest from then on. Throws LoadError (missing file, not a model, newer format,
  // unavailable device, a package compiled for another device or CPU) or OptionError (malformed
  // options, or an optimize level for a package).
  static std::shared_ptr<Model> load(const std::string& path, const LoadOptions& options = {});

  // Loads a TorchScript archive held in memory: `size` bytes at `data`, read in place (they
  // must stay valid during the call, not after it). Messages describe it by its size and first
  // bytes; path() is "". Throws as load() does, and UnsupportedFormatError for an AOTInductor
  // package (its compiled code is a shared library, loaded from a file).
  static std::shared_ptr<Model> load_from_memory(const void* data, size_t size,
                                                 const LoadOptions& options = {});

  // Runs a method with autograd off. Tensors in args are moved to the model's device.
  // Throws InferenceError (unknown method, error inside the model) or ArgumentError.
  c10::IValue run(const std::string& method, std::vector<c10::IValue> args) const;

  // Runs a method of a TorchScript class instance that one of this model's methods returned
  // (see script_object.h), as run() runs the model's own: the same argument checks, device
  // moves, autograd off and errors. Throws InferenceError if its class has no such method.
  c10::IValue run_object_method(const c10::intrusive_ptr<c10::ivalue::Object>& object,
                                const std::string& method, std::vector<c10::IValue> args) const;

  // Shorthand for run("forward", args).
  c10::IValue forward(std::vector<c10::IValue> args) const;

  // Names of the module's methods ("forward" and any @torch.jit.export'ed ones), sorted.
  std::vector<std::string> methods() const;

  // Whether the module has a method of that name.
  bool has_method(const std::string& method) const;

  // The method's signature without `self`, for front ends that convert arguments.
  // Throws InferenceError if there is no such method.
  const c10::FunctionSchema& signature(const std::string& method) const;

  // The module's parameters and buffers, by dotted name ("layer1.0.conv1.weight"), as saved:
  // detached, sharing memory with the model. Throws InferenceError for an optimized model,
  // whose weights freezing has folded into its graph.
  std::vector<std::pair<std::string, at::Tensor>> named_parameters() const;
  std::vector<std::pair<std::string, at::Tensor>> named_buffers() const;

  // The other attributes (neither tensors nor submodules, nor the training flag: every module
  // runs in eval mode), by dotted name, as saved. Throws as named_parameters() does.
  std::vector<std::pair<std::string, c10::IValue>> attributes() const;

  // What the archive says about itself (labels, preprocessing); empty if it carries nothing.
  const Metadata& metadata() const { return metadata_; }

  // Which variant runs (see optimize.h), the timings that chose it, and any fallback notes;
  // before a first-call choice, the candidates it will time.
  std::string optimization() const;

  const std::string& path() const { return path_; }  // "" for a model loaded from memory
  // How messages name the model: its quoted path, or what was loaded from memory.
  const std::string& source() const { return source_; }
  const c10::Device& device() const { return device_; }

 private:
  // One variant, ready to run: its module, its methods, the dtype its float inputs take.
  struct Runner {
    torch::jit::Module module;
    c10::ScalarType input_dtype;
    bool as_saved;             // module is the saved module, not a frozen copy
    bool onednn_graph;         // fused by oneDNN Graph: every call runs in a fusion scope
    std::string variant;       // its name, as optimize.h's candidate_variants gave it
    std::string optimization;  // the name, then how it was chosen and any notes
    std::unordered_map<std::string, torch::jit::Function*> functions;
  };
  struct Candidate {
    std::shared_ptr<Runner> runner;
    bool fallback_only;  // tried only if every candidate before it failed
    std::vector<double> times_ms = {};
    double median_ms = 0;
  };
  // Where choices are remembered (see choice_cache.h): no model_hash, not remembered. For
  // one choice (looked_up() for its inputs): its key and what the cache held for it.
  struct ChoiceCacheContext {
    std::string dir;
    std::string model_hash;
    std::string level;
    std::string key;                 // "" until looked up, or if nothing is remembered
    std::string remembered_variant;  // "" if the cache held nothing for the key
    std::string remembered_timings;
  };
  // Variants still to be timed, when load() had no input to time them on: the first call of
  // forward times them on its arguments and keeps the fastest.
  struct FirstCallChoice {
    ChoiceCacheContext cache;
    std::once_flag once;
    std::vector<Candidate> candidates;
    int warmup_runs;
    std::vector<std::string> notes;
    std::string description;  // optimization() until then
    bool chosen = false;      // guarded by runner_mutex_
  };

  Model(std::string path, std::string source, c10::Device device, Metadata metadata,
        std::shared_ptr<Runner> runner);
  static std::shared_ptr<Runner> make_runner(Variant variant);
  Model(std::string path, std::string source, c10::Device device,
        std::shared_ptr<const AotiPackage> package);
  // load() for an AOTInductor package at `path`.
  static std::shared_ptr<Model> load_package(const std::string& path, const std::string& source,
                                             const c10::Device& device, const LoadOptions& options);
  // Checks and loads the archive `archive` reads (a file or memory), then does the rest of
  // load(): metadata, variants, warm-up. `source` names the archive in messages.
  static std::shared_ptr<Model> load_archive(
      const std::string& path, const std::string& source, const c10::Device& device,
      const LoadOptions& options,
      const std::shared_ptr<caffe2::serialize::ReadAdapterInterface>& archive);
  // The variant that runs now (the first candidate until a first-call choice is made).
  std::shared_ptr<const Runner> runner() const;
  // runner(), for what only a TorchScript module has (`what`: "the parameters", ...): throws
  // InferenceError for a package.
  std::shared_ptr<const Runner> script_runner(const char* what) const;
  const c10::FunctionSchema& find(const std::string& method) const;
  // Calls `function` of `runner` on `self` and `args` checked against `signature` (without
  // self); `name` ("forward", "Pair.swap") is how errors call it.
  c10::IValue invoke(const Runner& runner, torch::jit::Function& function,
                     const c10::FunctionSchema& signature, c10::IValue self,
                     const std::string& name, std::vector<c10::IValue> args) const;
  c10::IValue run_forward(const Runner& runner, const std::vector<c10::IValue>& args) const;
  torch::jit::Function& function_of(const Runner& runner, const std::string& method) const;
  // The module as saved, for reading its weights; throws if freezing replaced them.
  const torch::jit::Module& saved_module(const Runner& runner, const char* what) const;
  // The caller's warm-up inputs, or one made from the metadata's input_shape (if that is not
  // absurdly large: else a note says so), or none.
  static std::vector<c10::IValue> warmup_inputs(const LoadOptions& options,
                                                const Metadata& metadata,
                                                std::vector<std::string>& notes);
  // Warms every candidate up on `inputs` (warmup_runs calls, at least 2), times them in
  // interleaved rounds and returns the fastest, its optimization saying the timings (`how`:
  // "the warm-up input", "the first call"). Candidates that fail are noted and skipped; if
  // all fail, returns nullptr with the first failure in `failure`.
  Candidate* choose_fastest(std::vector<Candidate>& candidates,
                            const std::vector<c10::IValue>& inputs, int warmup_runs,
                            const std::string& how, std::vector<std::string>& notes,
                            std::exception_ptr& failure) const;
  // `cache` with its key for `inputs` and the choice remembered for it, read once.
  static ChoiceCacheContext looked_up(ChoiceCacheContext cache, const c10::Device& device,
                                      const std::vector<c10::IValue>& inputs);
  // choose_fastest, unless `cache` (looked up for these inputs) remembers a choice (then that
  // candidate is only warmed up); a new choice is remembered.
  Candidate* choose(std::vector<Candidate>& candidates, const std::vector<c10::IValue>& inputs,
                    int warmup_runs, const std::string& how, const ChoiceCacheContext& cache,
                    std::vector<std::string>& notes, std::exception_ptr& failure) const;
  // The first call of forward: chooses among choice_'s candidates on `args`.
  void choose_on_first_call(const std::vector<c10::IValue>& args) const;

  std::string path_;
  std::string source_;  // how messages name the archive: the quoted path, or what was in memory
  c10::Device device_;
  Metadata metadata_;
  std::unordered_map<std::string, c10::FunctionSchema> signatures_;  // without self
  mutable std::mutex runner_mutex_;
  mutable std::shared_ptr<const Runner> runner_;  // guarded by runner_mutex_
  std::unique_ptr<FirstCallChoice> choice_;       // null once load() has chosen
  std::shared_ptr<const AotiPackage> package_;    // an AOTInductor package's; no runner_ then
};

}  // namespace tsnative

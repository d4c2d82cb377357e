// The TorchScript backend: an archive torch.jit.save wrote (.pt), run by LibTorch's JIT, with
// the variants of each optimize level (variants.h) -- one chosen at load, or timed on the first
// call of forward (choice.cpp) -- and whatever methods the module exports.
#pragma once

#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include <caffe2/serialize/read_adapter_interface.h>
#include <torch/csrc/jit/api/module.h>

#include "core/backend.h"
#include "core/backends/torchscript/variants.h"

namespace tsnative {

class TorchScriptBackend final : public Backend {
 public:
  // Loads the archive `archive` reads (a file, or memory) onto `device` in eval mode, with the
  // metadata it carries, builds the variants of options.optimize and warms them up, keeping the
  // fastest on the warm-up inputs (without any, the first call of forward chooses). `source`
  // names it in messages. Throws LoadError, or InferenceError if the caller's warm-up inputs fail.
  static std::unique_ptr<TorchScriptBackend> load(
      const std::string& source, const c10::Device& device, const LoadOptions& options,
      const std::shared_ptr<caffe2::serialize::ReadAdapterInterface>& archive);

  c10::IValue run(const std::string& method, const c10::FunctionSchema& signature,
                  std::vector<c10::IValue> args) const override;
  std::string optimization() const override;
  std::vector<std::pair<std::string, at::Tensor>> named_parameters() const override;
  std::vector<std::pair<std::string, at::Tensor>> named_buffers() const override;
  std::vector<std::pair<std::string, c10::IValue>> attributes() const override;
  c10::IValue run_object_method(const c10::intrusive_ptr<c10::ivalue::Object>& object,
                                const std::string& method,
                                std::vector<c10::IValue> args) const override;

 private:
  // One variant, ready to run: its module, its methods, the dtype its float inputs take.
  struct Runner {
    torch::jit::Module module;
    c10::ScalarType input_dtype;
    bool as_saved;             // module is the saved module, not a frozen copy
    bool onednn_graph;         // fused by oneDNN Graph: every call runs in a fusion scope
    std::string variant;       // its name, as variants.h's candidate_variants gave it
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

  TorchScriptBackend(std::string source, c10::Device device, Metadata metadata,
                     std::shared_ptr<Runner> runner);
  static std::shared_ptr<Runner> make_runner(Variant variant);
  // The variant that runs now (the first candidate until a first-call choice is made).
  std::shared_ptr<const Runner> runner() const;
  // Calls `function` of `runner` on `self` and `args` checked against `signature` (without
  // self); `name` ("forward", "Pair.swap") is how errors call it.
  c10::IValue invoke(const Runner& runner, torch::jit::Function& function,
                     const c10::FunctionSchema& signature, c10::IValue self,
                     const std::string& name, std::vector<c10::IValue> args) const;
  c10::IValue run_forward(const Runner& runner, const std::vector<c10::IValue>& args) const;
  torch::jit::Function& function_of(const Runner& runner, const std::string& method) const;
  // The module as saved, for reading its weights; throws if freezing replaced them.
  const torch::jit::Module& saved_module(const Runner& runner, const char* what) const;
  // Warms every candidate up on `inputs` (warmup_runs calls, at least 2), times them in
  // interleaved rounds (5 at least, more while they take little time) and returns the one
  // pick_within_noise keeps, its optimization saying the timings (`how`: "the warm-up
  // input", "the first call"). Candidates that fail are noted and skipped; if all fail,
  // returns nullptr with the first failure in `failure`.
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

  mutable std::mutex runner_mutex_;
  mutable std::shared_ptr<const Runner> runner_;  // guarded by runner_mutex_
  std::unique_ptr<FirstCallChoice> choice_;       // null once load() has chosen
};

// Which of the candidates timed (their median milliseconds, in candidate order: the most
// optimized first, float32 after bfloat16, the saved module last) to keep: the fastest, or the
// simplest of those within `tolerance` of it (a gap that small is noise on a busy machine, and
// the simpler variant is the one to trust).
size_t pick_within_noise(const std::vector<double>& medians, double tolerance = 0.05);

}  // namespace tsnative

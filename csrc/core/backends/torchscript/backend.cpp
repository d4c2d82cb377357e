#include "core/backends/torchscript/backend.h"

#include <algorithm>
#include <cctype>
#include <optional>
#include <sstream>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/jit/serialization/import.h>

#include "core/backends/torchscript/choice_cache.h"
#include "core/errors.h"
#include "core/ivalues.h"
#include "core/load_options.h"
#include "core/runtime.h"
#include "core/script_object.h"

namespace tsnative {
namespace {

bool contains(const std::string& text, const char* part) {
  return text.find(part) != std::string::npos;
}

// Turns LibTorch's archive-reader messages into one sentence that names the cause. `source` is
// how messages name the archive: its quoted path, or what was loaded from memory.
std::string describe_load_failure(const std::string& source, const std::string& message) {
  if (contains(message, "maximum supported version for reading")) {
    const auto start = message.find("Attempted to read");
    const auto end = message.find(". The version", start);
    return source + " was saved by a newer PyTorch than this LibTorch (" + torch_version() +
           ") can read: " + message.substr(start, end - start);
  }
  if (contains(message, "failed reading zip archive")) {
    return source + " is not a TorchScript archive (not a readable zip file; " +
           "is it truncated or some other format?)";
  }
  if (contains(message, "failed locating file constants.pkl")) {
    return source +
           " is not a TorchScript archive: it holds no TorchScript code (saved with torch.save "
           "instead of torch.jit.save / torch.jit.script(...).save?)";
  }
  // A model calling an operator from a library nobody loaded: LibTorch only calls it unknown.
  const std::string unknown_op = "Unknown builtin op: ";
  if (const auto at = message.find(unknown_op); at != std::string::npos) {
    const auto start = at + unknown_op.size();
    std::string op = message.substr(start, message.find_first_of(" \n", start) - start);
    if (!op.empty() && op.back() == '.') op.pop_back();
    if (op.rfind("aten::", 0) != 0 && op.rfind("prim::", 0) != 0) {
      return "cannot load " + source + ": it calls the operator " + op +
             ", which no loaded library registers: load the library that defines it first "
             "(tsnative.load_library(path), ts-infer --load-library FILE)";
    }
  }
  std::string cause = first_line(message);
  // c10's "[enforce fail at inline_container.cc:215] . " names LibTorch's source, not the file.
  if (cause.rfind("[enforce fail at ", 0) == 0 && contains(cause, "] . ")) {
    cause.erase(0, cause.find("] . ") + 4);
  }
  // A compile error quotes the archive's code it stopped at, after a first line that often
  // ends in " here:".
  const std::string here = " here:";
  const bool ends_here = cause.size() > here.size() &&
                         cause.compare(cause.size() - here.size(), here.size(), here) == 0;
  if (ends_here) cause.resize(cause.size() - here.size());
  if (ends_here || contains(message, "File \"code/")) {
    return "cannot load " + source +
           ": its TorchScript code does not compile (is the archive corrupt?): " + cause;
  }
  return "cannot load " + source + ": " + cause;
}

// "RuntimeError: ..." or "builtins.ValueError: ...": where the exception text starts.
bool starts_exception(const std::string& line) {
  const auto colon = line.find(": ");
  return colon != std::string::npos && colon > 0 &&
         std::all_of(line.begin(), line.begin() + static_cast<std::ptrdiff_t>(colon), [](char c) {
           return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.';
         });
}

// A TorchScript failure carries two tracebacks and the exception text last. Keep the text
// ("ValueError: ..."), plus where in the original source it was raised.
std::string describe_script_failure(const std::string& method, const std::string& message) {
  if (!contains(message, "Traceback of TorchScript")) {
    // The cause is the first line; LibTorch's internal errors append the whole graph after it
    // ("Schema not found for node. ... within the graph: ...", hundreds of lines).
    return method + "() failed: " +
           first_line(message.substr(std::min(message.find_first_not_of(" \n"), message.size())));
  }
  std::istringstream lines(message);
  std::string line, cause, location;
  bool after_marker = false;
  while (std::getline(lines, line)) {
    if (contains(line, "<--- HERE")) {
      after_marker = true;
      cause.clear();
    } else if (line.rfind("  File \"", 0) == 0) {
      location = line.substr(2);
      after_marker = false;
    } else if (after_marker && !line.empty() && line[0] != ' ' &&
               (!cause.empty() || starts_exception(line))) {
      cause += (cause.empty() ? "" : " ") + line;
    }
  }
  if (cause.rfind("builtins.", 0) == 0) {
    cause.erase(0, std::string("builtins.").size());
  }
  if (cause.empty()) {
    cause = first_line(message);
  }
  return method + "() raised " + cause + (location.empty() ? "" : " [" + location + "]");
}

// Returns `value` with `convert` applied to every tensor inside it (lists, tuples and dicts
// included). Containers are copied, so the caller's own lists and dicts stay as they were.
template <typename Convert>
c10::IValue map_tensors(const c10::IValue& value, const Convert& convert) {
  if (value.isTensor()) {
    return convert(value.toTensor());
  }
  if (value.isList()) {
    auto list = value.toList().copy();
    for (size_t i = 0; i < list.size(); ++i) {
      list.set(i, map_tensors(list.get(i), convert));
    }
    return list;
  }
  if (value.isTuple()) {
    std::vector<c10::IValue> elements;
    for (const auto& element : value.toTupleRef().elements()) {
      elements.push_back(map_tensors(element, convert));
    }
    return c10::ivalue::Tuple::create(std::move(elements));
  }
  if (value.isGenericDict()) {
    auto dict = value.toGenericDict().copy();
    for (auto& entry : dict) {
      entry.setValue(map_tensors(entry.value(), convert));
    }
    return dict;
  }
  return value;
}

// Whether any tensor inside `value` satisfies `test`.
template <typename Test>
bool any_tensor(const c10::IValue& value, const Test& test) {
  return any_value(value,
                   [&test](const c10::IValue& v) { return v.isTensor() && test(v.toTensor()); });
}

}  // namespace

std::unique_ptr<TorchScriptBackend> TorchScriptBackend::load(
    const std::string& source, const c10::Device& device, const LoadOptions& options,
    const std::shared_ptr<caffe2::serialize::ReadAdapterInterface>& archive) {
  torch::jit::Module module;
  torch::jit::ExtraFilesMap extra_files{{kMetadataFile, ""}};
  try {
    // Loaded without the debug tables (code/*.debug_pkl): LibTorch unpickles them
    // lazily, while it describes a compile error, inside ErrorReport::what() -- which is
    // noexcept, so a corrupt table throwing there aborts the process (Python's torch.jit.load
    // dies the same way). All they add is the Python source lines of runtime tracebacks;
    // errors raised inside a model are located in the archive's own code/ files instead.
    module = torch::jit::load(archive, device, extra_files, /*load_debug_files=*/false);
    module.eval();  // throws for a module type without `training` (a corrupt archive)
  } catch (const c10::Error& e) {
    throw LoadError(describe_load_failure(source, e.what_without_backtrace()));
  } catch (const std::exception& e) {
    throw LoadError(describe_load_failure(source, e.what()));
  }
  const auto& metadata_json = extra_files[kMetadataFile];
  const auto metadata = metadata_json.empty() ? Metadata{} : parse_metadata(metadata_json, source);

  std::vector<std::string> method_names;
  for (const auto& method : module.get_methods()) method_names.push_back(method.name());
  std::vector<std::string> notes;
  const auto inputs = warmup_inputs(options, metadata, notes);
  ChoiceCacheContext cache{options.choice_cache_dir.value_or(default_choice_cache_dir()), "",
                           optimize_level_name(options.optimize)};
  if (options.optimize != OptimizeLevel::kNone && !cache.dir.empty()) {
    try {
      cache.model_hash = archive_hash(*archive);
    } catch (const std::exception&) {
      // unreadable now: not remembered
    }
  }
  // oneDNN Graph variants fuse only if their first calls run in a fusion scope: those calls
  // are the warm-up in load, or else the first call's timing rounds.
  VariantContext context{device, cpu_has_native_bf16(), /*warmed_up_in_scope=*/true};
  const auto build = [&]() {
    std::vector<Candidate> built;
    std::vector<std::string> build_notes;
    for (auto& variant :
         candidate_variants(module, options.optimize, context, method_names, build_notes)) {
      const bool fallback_only = variant.fallback_only;
      built.push_back({make_runner(std::move(variant)), fallback_only});
    }
    return std::make_pair(std::move(built), std::move(build_notes));
  };
  // A choice remembered for these inputs: only its variant is built (freezing the others
  // would cost most of what the cache saves).
  if (!inputs.empty()) {
    cache = looked_up(cache, device, inputs);
    context.only_variant = cache.remembered_variant;
  }
  auto [candidates, build_notes] = build();
  const auto is_remembered = [&context](const Candidate& candidate) {
    return candidate.runner->variant == context.only_variant;
  };
  if (!context.only_variant.empty() &&
      std::none_of(candidates.begin(), candidates.end(), is_remembered)) {
    context.only_variant.clear();  // a variant this build no longer makes: choose afresh
    std::tie(candidates, build_notes) = build();
  }
  notes.insert(notes.end(), build_notes.begin(), build_notes.end());
  std::unique_ptr<TorchScriptBackend> model(
      new TorchScriptBackend(source, device, metadata, candidates.front().runner));
  if (!inputs.empty()) {
    std::exception_ptr failure;
    const auto* chosen = model->choose(candidates, inputs, options.warmup_runs, "the warm-up input",
                                       cache, notes, failure);
    if (chosen == nullptr && !options.warmup_inputs.empty()) {
      // Inputs the caller gave must work; an input guessed from the metadata may not fit.
      try {
        std::rethrow_exception(failure);
      } catch (const InferenceError& e) {
        throw InferenceError("warming up " + source + " failed: " + e.what());
      }
    }
    auto runner = chosen != nullptr ? chosen->runner : candidates.front().runner;
    for (const auto& note : notes) runner->optimization += "; " + note;
    model->runner_ = runner;
  } else if (candidates.size() > 1 && options.warmup_runs > 0) {
    model->choice_ = std::make_unique<FirstCallChoice>();
    model->choice_->candidates = std::move(candidates);
    model->choice_->warmup_runs = options.warmup_runs;
    model->choice_->cache = cache;
    std::string names;
    for (const auto& candidate : model->choice_->candidates) {
      if (candidate.fallback_only) continue;
      names += (names.empty() ? "" : ", ") + candidate.runner->optimization;
    }
    model->choice_->description = std::string(optimize_level_name(options.optimize)) +
                                  ": the first call of forward times " + names +
                                  " on its input and keeps the fastest";
    for (const auto& note : notes) model->choice_->description += "; " + note;
    model->choice_->notes = std::move(notes);
  } else {
    for (const auto& note : notes) candidates.front().runner->optimization += "; " + note;
  }
  return model;
}

std::shared_ptr<TorchScriptBackend::Runner> TorchScriptBackend::make_runner(Variant variant) {
  auto runner = std::make_shared<Runner>(Runner{std::move(variant.module),
                                                variant.input_dtype,
                                                variant.as_saved,
                                                variant.onednn_graph,
                                                variant.name,
                                                std::move(variant.name),
                                                {}});
  for (const auto& method : runner->module.get_methods()) {
    runner->functions.emplace(method.name(), &method.function());
  }
  return runner;
}

TorchScriptBackend::TorchScriptBackend(std::string source, c10::Device device, Metadata metadata,
                                       std::shared_ptr<Runner> runner)
    : Backend(std::move(source), device), runner_(std::move(runner)) {
  metadata_ = std::move(metadata);
  for (const auto& method : runner_->module.get_methods()) {
    const auto& schema = method.function().getSchema();
    const auto& arguments = schema.arguments();
    signatures_.emplace(
        method.name(),
        schema.cloneWithArguments(std::vector<c10::Argument>(
            arguments.begin() + std::min<size_t>(1, arguments.size()), arguments.end())));
  }
  // What tsnative.export recorded of a one-tensor forward's example: its dtype and shape, the
  // first dimension (the batch) free, as a traced or scripted module takes any batch. Arguments
  // with defaults (a mask=None) are left to them.
  const auto forward = signatures_.find("forward");
  const auto& forward_arguments =
      forward == signatures_.end() ? std::vector<c10::Argument>{} : forward->second.arguments();
  const auto required = std::count_if(forward_arguments.begin(), forward_arguments.end(),
                                      [](const c10::Argument& a) { return !a.default_value(); });
  if (!forward_arguments.empty() && required == 1 && !forward_arguments[0].default_value() &&
      !metadata_.input_shape.empty() && !metadata_.input_dtype.empty()) {
    TensorSpec input{forward_arguments[0].name(), dtype_named(metadata_.input_dtype), {}};
    for (const auto size : metadata_.input_shape) input.shape.push_back({size, "", 0, -1});
    input.shape[0] = {-1, "batch", 1, -1};
    inputs_.push_back(std::move(input));
  }
}

std::shared_ptr<const TorchScriptBackend::Runner> TorchScriptBackend::runner() const {
  std::lock_guard<std::mutex> lock(runner_mutex_);
  return runner_;
}

std::string TorchScriptBackend::optimization() const {
  std::lock_guard<std::mutex> lock(runner_mutex_);
  return choice_ != nullptr && !choice_->chosen ? choice_->description : runner_->optimization;
}

c10::IValue TorchScriptBackend::run(const std::string& method, const c10::FunctionSchema& signature,
                                    std::vector<c10::IValue> args) const {
  if (choice_ != nullptr && method == "forward") {
    std::call_once(choice_->once, [this, &args] { choose_on_first_call(args); });
  }
  const auto current = runner();
  return invoke(*current, function_of(*current, method), signature, current->module._ivalue(),
                method, std::move(args));
}

c10::IValue TorchScriptBackend::run_forward(const Runner& runner,
                                            const std::vector<c10::IValue>& args) const {
  return invoke(runner, function_of(runner, "forward"), signatures_.at("forward"),
                runner.module._ivalue(), "forward", args);
}

torch::jit::Function& TorchScriptBackend::function_of(const Runner& runner,
                                                      const std::string& method) const {
  const auto found = runner.functions.find(method);
  if (found == runner.functions.end()) {  // freezing keeps every method; a guard all the same
    throw InferenceError(source_ + " has no method '" + method + "' in its variant " +
                         runner.optimization);
  }
  return *found->second;
}

c10::IValue TorchScriptBackend::run_object_method(
    const c10::intrusive_ptr<c10::ivalue::Object>& object, const std::string& method,
    std::vector<c10::IValue> args) const {
  const auto found = find_object_method(*object, method);
  return invoke(*runner(), *found.function, found.signature, object,
                object_type_name(*object) + "." + method, std::move(args));
}

c10::IValue TorchScriptBackend::invoke(const Runner& runner, torch::jit::Function& function,
                                       const c10::FunctionSchema& signature, c10::IValue self,
                                       const std::string& name,
                                       std::vector<c10::IValue> args) const {
  // The profiling executor optimizes the graph again for each new input shape; in the scope,
  // those graphs are fused too (a batch size other than the warm-up's ran 3x slower unfused).
  std::optional<OnednnGraphFusionScope> fusion;
  if (runner.onednn_graph) fusion.emplace();
  check_arguments(signature, args);
  args.insert(args.begin(), std::move(self));
  const auto input_dtype = runner.input_dtype;
  // Tensors go to the model's device; float32 ones also to the variant's compute dtype.
  const auto input_needs_conversion = [this, input_dtype](const at::Tensor& t) {
    return t.device() != device_ || (t.scalar_type() == at::kFloat && input_dtype != at::kFloat);
  };
  for (auto& arg : args) {
    if (any_tensor(arg, input_needs_conversion)) {
      arg = map_tensors(arg, [this, input_dtype](const at::Tensor& t) {
        return t.to(device_, t.scalar_type() == at::kFloat ? input_dtype : t.scalar_type());
      });
    }
  }
  // NoGradGuard rather than InferenceMode: tensors made under InferenceMode cannot be modified
  // in place outside it, and callers (Python users above all) get ordinary tensors back.
  c10::NoGradGuard no_grad;
  c10::IValue output;
  try {
    output = function(std::move(args));
  } catch (const c10::Error& e) {
    throw InferenceError(describe_script_failure(name, e.what_without_backtrace()));
  } catch (const std::exception& e) {
    throw InferenceError(describe_script_failure(name, e.what()));
  }
  // An output can be an input handed back as is; detach it so no result ever requires grad.
  // A reduced-precision variant hands back float32, as the saved model would.
  const auto output_needs_conversion = [input_dtype](const at::Tensor& t) {
    return t.requires_grad() || (t.scalar_type() == input_dtype && input_dtype != at::kFloat);
  };
  if (any_tensor(output, output_needs_conversion)) {
    output = map_tensors(output, [input_dtype](const at::Tensor& t) {
      return t.scalar_type() == input_dtype && input_dtype != at::kFloat ? t.detach().to(at::kFloat)
                                                                         : t.detach();
    });
  }
  return output;
}

const torch::jit::Module& TorchScriptBackend::saved_module(const Runner& runner,
                                                           const char* what) const {
  if (!runner.as_saved) {
    const auto level = runner.optimization.substr(0, runner.optimization.find(' '));
    throw InferenceError(std::string(what) + " of " + source_ + " cannot be read: optimize='" +
                         level +
                         "' froze its weights into the graph; load it with optimize='none' to "
                         "read them");
  }
  return runner.module;
}

namespace {

// Named tensors of a module, detached: no grad, the model's own memory.
template <typename Slots>
std::vector<std::pair<std::string, at::Tensor>> detached(const Slots& slots) {
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const auto& slot : slots) tensors.emplace_back(slot.name, slot.value.detach());
  return tensors;
}

}  // namespace

std::vector<std::pair<std::string, at::Tensor>> TorchScriptBackend::named_parameters() const {
  const auto current = runner();
  return detached(saved_module(*current, "the parameters").named_parameters(/*recurse=*/true));
}

std::vector<std::pair<std::string, at::Tensor>> TorchScriptBackend::named_buffers() const {
  const auto current = runner();
  return detached(saved_module(*current, "the buffers").named_buffers(/*recurse=*/true));
}

std::vector<std::pair<std::string, c10::IValue>> TorchScriptBackend::attributes() const {
  const auto current = runner();
  std::vector<std::pair<std::string, c10::IValue>> values;
  for (const auto& slot :
       saved_module(*current, "the attributes").named_attributes(/*recurse=*/true)) {
    const auto& value = slot.value;
    // What nn.Module itself keeps on every module (the training flag: always eval here; the
    // hooks' bookkeeping), not the model's own attributes.
    const auto own_name = slot.name.substr(slot.name.rfind('.') + 1);
    const bool bookkeeping = own_name == "training" || own_name == "_is_full_backward_hook";
    const bool submodule = value.isObject() && value.toObjectRef().type()->is_module();
    if (!value.isTensor() && !submodule && !bookkeeping) values.emplace_back(slot.name, value);
  }
  return values;
}

}  // namespace tsnative

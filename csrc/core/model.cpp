#include "core/model.h"

#include <algorithm>
#include <cctype>
#include <sstream>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <caffe2/serialize/file_adapter.h>
#include <caffe2/serialize/in_memory_adapter.h>
#include <torch/csrc/jit/serialization/import.h>

#include "core/archive_guard.h"
#include "core/backends/aoti.h"
#include "core/choice_cache.h"
#include "core/errors.h"
#include "core/ivalues.h"
#include "core/model_format.h"
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

// Checks `args` against `signature` (without self: it counts what the caller gave).
void check_arguments(const c10::FunctionSchema& signature, std::vector<c10::IValue>& args) {
  try {
    signature.checkAndNormalizeInputs(args);
  } catch (const c10::Error& e) {
    throw ArgumentError(first_line(e.what_without_backtrace()));
  }
}

// Whether any tensor inside `value` satisfies `test`.
template <typename Test>
bool any_tensor(const c10::IValue& value, const Test& test) {
  return any_value(value,
                   [&test](const c10::IValue& v) { return v.isTensor() && test(v.toTensor()); });
}

// The core's edge for loading: whatever LibTorch throws that the steps of a load did not turn
// into a typed error (found by fuzzing: an allocation failure, uncaught in C++, an abort)
// becomes a LoadError naming the file.
template <typename Load>
std::shared_ptr<Model> with_typed_errors(const std::string& source, const Load& load) {
  try {
    return load();
  } catch (const Error&) {
    throw;
  } catch (const c10::Error& e) {
    throw LoadError("cannot load " + source + ": " + first_line(e.what_without_backtrace()));
  } catch (const std::exception& e) {
    throw LoadError("cannot load " + source + ": " + first_line(e.what()));
  }
}

}  // namespace

std::shared_ptr<Model> Model::load(const std::string& path, const LoadOptions& options) {
  const c10::Device device = resolve_device(options.device);
  if (const auto problem = file_problem(path); !problem.empty()) {
    const bool directory = problem == "it is a directory";
    throw LoadError("cannot load " + quoted(path) + ": " + problem +
                    (directory ? ", not a model file" : ""));
  }
  std::shared_ptr<caffe2::serialize::ReadAdapterInterface> archive;
  try {
    archive = std::make_shared<caffe2::serialize::FileAdapter>(path);
  } catch (const std::exception& e) {
    throw LoadError("cannot load " + quoted(path) + ": " + first_line(e.what()));
  }
  return with_typed_errors(
      quoted(path), [&] { return load_archive(path, quoted(path), device, options, archive); });
}

std::shared_ptr<Model> Model::load_from_memory(const void* data, size_t size,
                                               const LoadOptions& options) {
  const c10::Device device = resolve_device(options.device);
  // The first bytes tell a zip ("PK\x03\x04") from whatever else was handed over.
  const std::string first(static_cast<const char*>(data), std::min<size_t>(size, 8));
  const std::string source = "the model in memory (" + std::to_string(size) + " bytes" +
                             (size == 0 ? "" : ", starting '" + first + "'") + ")";
  if (size == 0) throw LoadError("cannot load " + source + ": it is empty");
  return with_typed_errors(source, [&] {
    return load_archive(
        "", source, device, options,
        std::make_shared<caffe2::serialize::MemoryReadAdapter>(data, static_cast<off_t>(size)));
  });
}

std::shared_ptr<Model> Model::load_archive(
    const std::string& path, const std::string& source, const c10::Device& device,
    const LoadOptions& options,
    const std::shared_ptr<caffe2::serialize::ReadAdapterInterface>& archive) {
  const auto format = archive_model_format(archive);
  if (format == ModelFormat::kOnnx) {
    throw UnsupportedFormatError(
        source +
        " is an ONNX model, and this core runs TorchScript and AOTInductor packages: run it "
        "from Python, where tsnative.load runs ONNX models with ONNX Runtime (pip install "
        "'tsnative[onnx]')");
  }
  if (const auto problem = archive_problem(archive); !problem.empty()) {
    throw LoadError(source + " is corrupt: " + problem);
  }
  if (format == ModelFormat::kAotInductor) return load_package(path, source, device, options);
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
  std::shared_ptr<Model> model(
      new Model(path, source, device, metadata, candidates.front().runner));
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

std::shared_ptr<Model> Model::load_package(const std::string& path, const std::string& source,
                                           const c10::Device& device, const LoadOptions& options) {
  if (path.empty()) {
    throw UnsupportedFormatError(
        source +
        " is an AOTInductor package, which loads from a file (its compiled code is a "
        "shared library): save it and load its path");
  }
  if (options.optimize != OptimizeLevel::kNone) {
    throw OptionError(std::string("optimize='") + optimize_level_name(options.optimize) +
                      "' applies to TorchScript models, and " + source +
                      " is an AOTInductor package, compiled and optimized ahead of time: load "
                      "it with optimize='none' (for bfloat16, export it from a bfloat16 model)");
  }
  std::shared_ptr<Model> model(
      new Model(path, source, device, AotiPackage::load(path, source, device)));
  // Its first call allocates the package's buffers; made here, as a TorchScript load warms up.
  std::vector<std::string> notes;
  const auto inputs = warmup_inputs(options, model->metadata_, notes);
  if (!inputs.empty()) {
    try {
      model->run("forward", inputs);
    } catch (const InferenceError& e) {
      // Inputs the caller gave must work; an input guessed from the metadata may not fit.
      if (!options.warmup_inputs.empty()) {
        throw InferenceError("warming up " + source + " failed: " + e.what());
      }
    }
  }
  return model;
}

std::vector<c10::IValue> Model::warmup_inputs(const LoadOptions& options, const Metadata& metadata,
                                              std::vector<std::string>& notes) {
  if (!options.warmup_inputs.empty() || options.warmup_runs < 1) return options.warmup_inputs;
  // An image model's input is a float batch of a known shape; other models need explicit inputs.
  if (!metadata.preprocess || metadata.input_shape.empty()) return {};
  // The metadata's shape is a guess, not an input the caller chose: one too large to make (a
  // corrupt file's, found by fuzzing: 120 GB, or more elements than an int64 counts) is not
  // made, and the model is not warmed up.
  constexpr uint64_t kMaxElements = uint64_t{1} << 26;  // 256 MiB of float32
  uint64_t elements = 1;
  bool overflow = false;
  for (const auto size : metadata.input_shape) {
    overflow |= __builtin_mul_overflow(elements, static_cast<uint64_t>(size), &elements);
  }
  if (overflow || elements > kMaxElements) {
    notes.push_back("not warmed up: the metadata's input_shape " +
                    c10::str(c10::IntArrayRef(metadata.input_shape)) +
                    " is larger than a warm-up input may be (" + std::to_string(kMaxElements) +
                    " elements)");
    return {};
  }
  try {
    return {at::rand(metadata.input_shape)};
  } catch (const std::exception& e) {
    notes.push_back("not warmed up: no input of the metadata's input_shape " +
                    c10::str(c10::IntArrayRef(metadata.input_shape)) +
                    " could be made: " + first_line(e.what()));
    return {};
  }
}

std::shared_ptr<Model::Runner> Model::make_runner(Variant variant) {
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

Model::Model(std::string path, std::string source, c10::Device device, Metadata metadata,
             std::shared_ptr<Runner> runner)
    : path_(std::move(path)),
      source_(std::move(source)),
      device_(device),
      metadata_(std::move(metadata)),
      runner_(std::move(runner)) {
  for (const auto& method : runner_->module.get_methods()) {
    const auto& schema = method.function().getSchema();
    const auto& arguments = schema.arguments();
    signatures_.emplace(
        method.name(),
        schema.cloneWithArguments(std::vector<c10::Argument>(
            arguments.begin() + std::min<size_t>(1, arguments.size()), arguments.end())));
  }
}

Model::Model(std::string path, std::string source, c10::Device device,
             std::shared_ptr<const AotiPackage> package)
    : path_(std::move(path)),
      source_(std::move(source)),
      device_(device),
      metadata_(package->metadata()),
      package_(std::move(package)) {
  signatures_.emplace("forward", package_->signature());
}

std::shared_ptr<const Model::Runner> Model::runner() const {
  std::lock_guard<std::mutex> lock(runner_mutex_);
  return runner_;
}

std::shared_ptr<const Model::Runner> Model::script_runner(const char* what) const {
  if (package_ != nullptr) {
    throw InferenceError(std::string(what) + " of " + source_ +
                         " cannot be read: an AOTInductor package has compiled them into its "
                         "code; read them from the eager model, or from a TorchScript export");
  }
  return runner();
}

std::string Model::optimization() const {
  if (package_ != nullptr) return package_->description();
  std::lock_guard<std::mutex> lock(runner_mutex_);
  return choice_ != nullptr && !choice_->chosen ? choice_->description : runner_->optimization;
}

const c10::FunctionSchema& Model::find(const std::string& method) const {
  const auto found = signatures_.find(method);
  if (found == signatures_.end()) {
    std::string known;
    for (const auto& name : methods()) {
      known += (known.empty() ? "" : ", ") + name;
    }
    throw InferenceError(source_ + " has no method '" + method + "' (it has: " + known + ")");
  }
  return found->second;
}

c10::IValue Model::run(const std::string& method, std::vector<c10::IValue> args) const {
  const auto& signature = find(method);
  if (package_ != nullptr) {
    check_arguments(signature, args);
    return package_->run(args);
  }
  if (choice_ != nullptr && method == "forward") {
    std::call_once(choice_->once, [this, &args] { choose_on_first_call(args); });
  }
  const auto current = runner();
  return invoke(*current, function_of(*current, method), signature, current->module._ivalue(),
                method, std::move(args));
}

c10::IValue Model::run_forward(const Runner& runner, const std::vector<c10::IValue>& args) const {
  return invoke(runner, function_of(runner, "forward"), find("forward"), runner.module._ivalue(),
                "forward", args);
}

torch::jit::Function& Model::function_of(const Runner& runner, const std::string& method) const {
  const auto found = runner.functions.find(method);
  if (found == runner.functions.end()) {  // freezing keeps every method; a guard all the same
    throw InferenceError(source_ + " has no method '" + method + "' in its variant " +
                         runner.optimization);
  }
  return *found->second;
}

c10::IValue Model::run_object_method(const c10::intrusive_ptr<c10::ivalue::Object>& object,
                                     const std::string& method,
                                     std::vector<c10::IValue> args) const {
  const auto found = find_object_method(*object, method);
  return invoke(*script_runner("the methods of returned objects"), *found.function, found.signature,
                object, object_type_name(*object) + "." + method, std::move(args));
}

c10::IValue Model::invoke(const Runner& runner, torch::jit::Function& function,
                          const c10::FunctionSchema& signature, c10::IValue self,
                          const std::string& name, std::vector<c10::IValue> args) const {
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

const torch::jit::Module& Model::saved_module(const Runner& runner, const char* what) const {
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

std::vector<std::pair<std::string, at::Tensor>> Model::named_parameters() const {
  const auto current = script_runner("the parameters");
  return detached(saved_module(*current, "the parameters").named_parameters(/*recurse=*/true));
}

std::vector<std::pair<std::string, at::Tensor>> Model::named_buffers() const {
  const auto current = script_runner("the buffers");
  return detached(saved_module(*current, "the buffers").named_buffers(/*recurse=*/true));
}

std::vector<std::pair<std::string, c10::IValue>> Model::attributes() const {
  const auto current = script_runner("the attributes");
  std::vector<std::pair<std::string, c10::IValue>> values;
  for (const auto& slot :
       saved_module(*current, "the attributes").named_attributes(/*recurse=*/true)) {
    const auto& value = slot.value;
    const bool training =
        slot.name == "training" ||
        (slot.name.size() > 9 && slot.name.compare(slot.name.size() - 9, 9, ".training") == 0);
    const bool submodule = value.isObject() && value.toObjectRef().type()->is_module();
    if (!value.isTensor() && !submodule && !training) values.emplace_back(slot.name, value);
  }
  return values;
}

c10::IValue Model::forward(std::vector<c10::IValue> args) const {
  return run("forward", std::move(args));
}

std::vector<std::string> Model::methods() const {
  std::vector<std::string> names;
  for (const auto& entry : signatures_) {
    names.push_back(entry.first);
  }
  std::sort(names.begin(), names.end());
  return names;
}

bool Model::has_method(const std::string& method) const { return signatures_.count(method) > 0; }

const c10::FunctionSchema& Model::signature(const std::string& method) const {
  return find(method);
}

}  // namespace tsnative

#include "core/backend.h"

#include <ATen/ATen.h>

#include "core/errors.h"
#include "core/load_options.h"

namespace tsnative {

std::vector<std::pair<std::string, at::Tensor>> Backend::named_parameters() const {
  lacking("the parameters");
}

std::vector<std::pair<std::string, at::Tensor>> Backend::named_buffers() const {
  lacking("the buffers");
}

std::vector<std::pair<std::string, c10::IValue>> Backend::attributes() const {
  lacking("the attributes");
}

c10::IValue Backend::run_object_method(const c10::intrusive_ptr<c10::ivalue::Object>&,
                                       const std::string&, std::vector<c10::IValue>) const {
  lacking("the methods of returned objects");
}

void Backend::lacking(const char* what) const {
  throw InferenceError(std::string(what) + " of " + source_ + " cannot be read: " + lacks_);
}

void check_arguments(const c10::FunctionSchema& signature, std::vector<c10::IValue>& args) {
  try {
    signature.checkAndNormalizeInputs(args);
  } catch (const c10::Error& e) {
    throw ArgumentError(first_line(e.what_without_backtrace()));
  }
}

bool warmup_shape_fits(c10::IntArrayRef shape) {
  uint64_t elements = 1;
  bool overflow = false;
  for (const auto size : shape) {
    overflow |=
        size < 0 || __builtin_mul_overflow(elements, static_cast<uint64_t>(size), &elements);
  }
  return !overflow && elements <= kMaxWarmupElements;
}

std::vector<c10::IValue> warmup_inputs(const LoadOptions& options, const Metadata& metadata,
                                       std::vector<std::string>& notes) {
  if (!options.warmup_inputs.empty() || options.warmup_runs < 1) return options.warmup_inputs;
  // An image model's input is a float batch of a known shape; other models need explicit inputs.
  if (!metadata.preprocess || metadata.input_shape.empty()) return {};
  // The metadata's shape is a guess, not an input the caller chose: one too large to make is
  // not made, and the model is not warmed up.
  if (!warmup_shape_fits(metadata.input_shape)) {
    notes.push_back("not warmed up: the metadata's input_shape " +
                    c10::str(c10::IntArrayRef(metadata.input_shape)) +
                    " is larger than a warm-up input may be (" +
                    std::to_string(kMaxWarmupElements) + " elements)");
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

}  // namespace tsnative

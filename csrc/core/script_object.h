// Instances of TorchScript classes (`@torch.jit.script class Pair`) that a model's methods
// return: what front ends show of them. Their methods run through Model::run_object_method,
// and they can be passed back into the model's methods as they are.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include <ATen/core/function.h>
#include <ATen/core/function_schema.h>
#include <ATen/core/ivalue.h>

namespace tsnative {

// Whether `value` is such an instance (an object that is not a module).
bool is_script_object(const c10::IValue& value);

// Whether `value` is or holds (in lists, tuples, dict values) such an instance; the first found
// is stored in `found` if given.
bool holds_script_object(const c10::IValue& value, c10::IValue* found = nullptr);

// The class's name without TorchScript's "__torch__." prefix, e.g. "Pair" or "models.Pair".
std::string object_type_name(const c10::ivalue::Object& object);

// The class's method names, sorted, without the double-underscore ones (__init__).
std::vector<std::string> object_methods(const c10::ivalue::Object& object);

// The object's attributes, in the class's order.
std::vector<std::pair<std::string, c10::IValue>> object_attributes(
    const c10::ivalue::Object& object);

// A method of the object's class and its signature without self. Throws InferenceError naming
// the class and its methods if there is none of that name.
struct ObjectMethod {
  torch::jit::Function* function;
  c10::FunctionSchema signature;
};
ObjectMethod find_object_method(const c10::ivalue::Object& object, const std::string& method);

}  // namespace tsnative

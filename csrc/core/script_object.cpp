#include "core/script_object.h"

#include <algorithm>

#include <ATen/core/class_type.h>
#include <ATen/core/function.h>

#include "core/errors.h"
#include "core/ivalues.h"

namespace tsnative {

bool is_script_object(const c10::IValue& value) {
  return value.isObject() && !value.toObjectRef().type()->is_module();
}

bool holds_script_object(const c10::IValue& value, c10::IValue* found) {
  return any_value(value, [found](const c10::IValue& v) {
    if (!is_script_object(v)) return false;
    if (found != nullptr) *found = v;
    return true;
  });
}

std::string object_type_name(const c10::ivalue::Object& object) {
  std::string name = object.type()->name() ? object.type()->name()->qualifiedName() : "object";
  const std::string prefix = "__torch__.";
  if (name.rfind(prefix, 0) == 0) name.erase(0, prefix.size());
  return name;
}

std::vector<std::string> object_methods(const c10::ivalue::Object& object) {
  std::vector<std::string> names;
  for (const auto* method : object.type()->methods()) {
    if (method->name().rfind("__", 0) != 0) names.push_back(method->name());  // not __init__
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<std::pair<std::string, c10::IValue>> object_attributes(
    const c10::ivalue::Object& object) {
  std::vector<std::pair<std::string, c10::IValue>> attributes;
  const auto& type = object.type();
  for (size_t i = 0; i < type->numAttributes(); ++i) {
    attributes.emplace_back(type->getAttributeName(i), object.getSlot(i));
  }
  return attributes;
}

ObjectMethod find_object_method(const c10::ivalue::Object& object, const std::string& method) {
  auto* function = object.type()->findMethod(method);
  if (function == nullptr) {
    std::string known;
    for (const auto& name : object_methods(object)) known += (known.empty() ? "" : ", ") + name;
    throw InferenceError("a " + object_type_name(object) + " object has no method '" + method +
                         "' (it has: " + (known.empty() ? "none" : known) + ")");
  }
  const auto& arguments = function->getSchema().arguments();
  return {function, function->getSchema().cloneWithArguments(
                        std::vector<c10::Argument>(arguments.begin() + 1, arguments.end()))};
}

}  // namespace tsnative

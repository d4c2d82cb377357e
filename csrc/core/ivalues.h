// Walking the values methods take and return: lists, tuples and dict values, recursively.
#pragma once

#include <ATen/core/ivalue.h>

namespace tsnative {

// Whether `test` holds for `value` or for anything inside it (list and tuple elements, dict
// values), tried outside in.
template <typename Test>
bool any_value(const c10::IValue& value, const Test& test) {
  if (test(value)) return true;
  if (value.isList()) {
    for (const auto& element : value.toListRef()) {
      if (any_value(element, test)) return true;
    }
  } else if (value.isTuple()) {
    for (const auto& element : value.toTupleRef().elements()) {
      if (any_value(element, test)) return true;
    }
  } else if (value.isGenericDict()) {
    for (const auto& entry : value.toGenericDict()) {
      if (any_value(entry.value(), test)) return true;
    }
  }
  return false;
}

}  // namespace tsnative

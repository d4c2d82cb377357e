#include "core/tensor_spec.h"

#include <stdexcept>

namespace tsnative {

std::string dtype_name(c10::ScalarType dtype) {
  return std::string(c10::getDtypeNames(dtype).first);
}

c10::ScalarType dtype_named(const std::string& name) {
#define TSNATIVE_DTYPE_NAMED(_, type)              \
  if (dtype_name(c10::ScalarType::type) == name) { \
    return c10::ScalarType::type;                  \
  }
  AT_FORALL_SCALAR_TYPES_WITH_COMPLEX_AND_QINTS(TSNATIVE_DTYPE_NAMED)
#undef TSNATIVE_DTYPE_NAMED
  throw std::invalid_argument("an unknown dtype '" + name + "'");
}

}  // namespace tsnative

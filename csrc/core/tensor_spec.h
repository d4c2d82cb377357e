// What one tensor argument of forward takes, as the model file describes it: its name, dtype
// and the size of each dimension (or the range of a dynamic one). AOTInductor packages carry
// it (backends/aoti/package.h reads it); front ends show it (the server's model metadata).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <c10/core/ScalarType.h>

namespace tsnative {

struct TensorSpec {
  struct Dimension {
    int64_t size = -1;  // a static size; -1 for a dynamic one
    std::string name;   // a dynamic one's name ("batch")
    int64_t min = 0;
    int64_t max = -1;  // -1: unbounded
  };
  std::string name;
  c10::ScalarType dtype = c10::ScalarType::Float;
  std::vector<Dimension> shape;
};

// A dtype as Python names it ("float32", "int64", "bfloat16"), and back. dtype_named throws
// std::invalid_argument for a name that is none.
std::string dtype_name(c10::ScalarType dtype);
c10::ScalarType dtype_named(const std::string& name);

}  // namespace tsnative

// How ts-infer shows what a model returned: class predictions (text lines or JSON), or, where
// softmax and top-k mean nothing (a probability, an embedding, a tuple or dict), the values
// themselves.
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include <ATen/core/ivalue.h>
#include <nlohmann/json.hpp>

#include "core/classify.h"

namespace tsnative::cli {

// "label: 12.34%" (the index where there is no label).
std::string describe(const Prediction& prediction);

// [{"index", "label" (null where none), "probability"}, ...]
nlohmann::json to_json(const std::vector<Prediction>& predictions);

// A value as JSON: a tensor is {"dtype", "shape", "data" (flat, row-major)}, tuples and lists
// are arrays, dicts objects (keys as text), numbers, strings, booleans and None themselves.
nlohmann::json value_to_json(const c10::IValue& value);

// A value as text lines "name: float32[1, 3] 0.1 0.2 0.3", one per tensor or scalar it
// holds, named by its place ("output[0]", "output['prob']"); a tensor shows its first
// `max_values` values and how many it has.
void print_value(std::ostream& out, const std::string& name, const c10::IValue& value,
                 size_t max_values = 10);

}  // namespace tsnative::cli

#include "cli/output.h"

#include <iomanip>
#include <sstream>

#include <ATen/ATen.h>

namespace tsnative::cli {
namespace {

// torch's name for a dtype ("float32"), which the user knows; c10's is the C++ one ("Float").
std::string dtype_name(const at::Tensor& tensor) {
  return std::string(c10::getDtypeNames(tensor.scalar_type()).first);
}

std::string number_text(const nlohmann::json& number) {
  if (!number.is_number_float()) return number.dump();
  std::ostringstream text;
  text << std::setprecision(6) << number.get<double>();
  return text.str();
}

// The tensor's values, flattened, as JSON numbers or booleans.
nlohmann::json tensor_data(const at::Tensor& tensor) {
  const auto flat = tensor.detach().to(at::kCPU).contiguous().reshape({-1});
  auto data = nlohmann::json::array();
  if (flat.scalar_type() == at::kBool) {
    const auto values = flat.to(at::kByte);
    for (int64_t i = 0; i < values.numel(); ++i) data.push_back(values[i].item<uint8_t>() != 0);
  } else if (at::isFloatingType(flat.scalar_type())) {
    const auto values = flat.to(at::kDouble);
    const double* begin = values.data_ptr<double>();
    data = std::vector<double>(begin, begin + values.numel());
  } else if (at::isIntegralType(flat.scalar_type(), /*includeBool=*/false)) {
    const auto values = flat.to(at::kLong);
    const int64_t* begin = values.data_ptr<int64_t>();
    data = std::vector<int64_t>(begin, begin + values.numel());
  } else {
    data = nullptr;  // complex and quantized values have no JSON number
  }
  return data;
}

std::string key_text(const c10::IValue& key) {
  if (key.isString()) return "'" + key.toStringRef() + "'";
  std::ostringstream text;
  text << key;
  return text.str();
}

}  // namespace

std::string describe(const Prediction& prediction) {
  std::ostringstream line;
  line << (prediction.label.empty() ? std::to_string(prediction.index) : prediction.label) << ": "
       << std::fixed << std::setprecision(2) << 100.0 * prediction.probability << "%";
  return line.str();
}

nlohmann::json to_json(const std::vector<Prediction>& predictions) {
  auto list = nlohmann::json::array();
  for (const auto& prediction : predictions) {
    list.push_back({{"index", prediction.index},
                    {"label", prediction.label.empty() ? nlohmann::json(nullptr)
                                                       : nlohmann::json(prediction.label)},
                    {"probability", prediction.probability}});
  }
  return list;
}

nlohmann::json value_to_json(const c10::IValue& value) {
  if (value.isTensor()) {
    const auto& tensor = value.toTensor();
    return {{"dtype", dtype_name(tensor)},
            {"shape", tensor.sizes().vec()},
            {"data", tensor_data(tensor)}};
  }
  if (value.isTuple() || value.isList()) {
    auto array = nlohmann::json::array();
    const auto elements =
        value.isTuple() ? value.toTupleRef().elements().vec() : value.toListRef().vec();
    for (const auto& element : elements) array.push_back(value_to_json(element));
    return array;
  }
  if (value.isGenericDict()) {
    auto object = nlohmann::json::object();
    for (const auto& entry : value.toGenericDict()) {
      const auto& key = entry.key();
      object[key.isString() ? key.toStringRef() : key_text(key)] = value_to_json(entry.value());
    }
    return object;
  }
  if (value.isNone()) return nullptr;
  if (value.isBool()) return value.toBool();
  if (value.isInt()) return value.toInt();
  if (value.isDouble()) return value.toDouble();
  if (value.isString()) return value.toStringRef();
  std::ostringstream text;
  text << value;
  return text.str();
}

void print_value(std::ostream& out, const std::string& name, const c10::IValue& value,
                 size_t max_values) {
  if (value.isTuple() || value.isList()) {
    const auto elements =
        value.isTuple() ? value.toTupleRef().elements().vec() : value.toListRef().vec();
    for (size_t i = 0; i < elements.size(); ++i) {
      print_value(out, name + "[" + std::to_string(i) + "]", elements[i], max_values);
    }
    return;
  }
  if (value.isGenericDict()) {
    for (const auto& entry : value.toGenericDict()) {
      print_value(out, name + "[" + key_text(entry.key()) + "]", entry.value(), max_values);
    }
    return;
  }
  out << name << ": ";
  if (!value.isTensor()) {
    out << (value.isString() ? key_text(value) : value_to_json(value).dump()) << "\n";
    return;
  }
  const auto& tensor = value.toTensor();
  out << dtype_name(tensor) << c10::str(tensor.sizes());
  const auto data = tensor_data(tensor.reshape({-1}).slice(0, 0, static_cast<int64_t>(max_values)));
  for (const auto& element : data) out << " " << number_text(element);
  if (tensor.numel() > static_cast<int64_t>(max_values)) {
    out << " ... (" << tensor.numel() << " values; --json or --save-output has them all)";
  }
  out << "\n";
}

}  // namespace tsnative::cli

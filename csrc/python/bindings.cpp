// tsnative._C: conversions between Python and the core, the GIL, and error translation.
// Nothing here decides behaviour; that lives in csrc/core.
#include <torch/csrc/jit/python/pybind_utils.h>
#include <torch/extension.h>

#include "core/backends/aoti/package.h"
#include "core/classify.h"
#include "core/errors.h"
#include "core/image.h"
#include "core/load_options.h"
#include "core/metadata.h"
#include "core/model.h"
#include "core/model_format.h"
#include "core/postprocess.h"
#include "core/runtime.h"
#include "core/script_object.h"

namespace py = pybind11;

namespace tsnative {
namespace {

// Exception classes live as long as the interpreter; the module owns one reference each.
PyObject* model_load_error = nullptr;
PyObject* inference_error = nullptr;
PyObject* argument_error = nullptr;
PyObject* input_error = nullptr;

void bind_errors(py::module_& m) {
  auto make = [&m](const char* name, PyObject* bases, const char* doc) {
    PyObject* type =
        PyErr_NewExceptionWithDoc((std::string("tsnative.") + name).c_str(), doc, bases, nullptr);
    if (type == nullptr) throw py::error_already_set();
    m.add_object(name, py::handle(type));
    return type;
  };
  model_load_error = make("ModelLoadError", PyExc_RuntimeError,
                          "The model file could not be loaded; the message names the cause.");
  inference_error = make("InferenceError", PyExc_RuntimeError,
                         "Running a model method failed; the message carries the model's error.");
  py::tuple argument_bases =
      py::make_tuple(py::handle(inference_error), py::handle(PyExc_TypeError));
  argument_error = make("ArgumentError", argument_bases.ptr(),
                        "The arguments do not match the method's signature.");
  input_error =
      make("InputError", PyExc_ValueError, "An input file (tensor or image) could not be read.");

  py::register_exception_translator([](std::exception_ptr error) {
    try {
      std::rethrow_exception(error);
    } catch (const ArgumentError& e) {
      PyErr_SetString(argument_error, e.what());
    } catch (const InferenceError& e) {
      PyErr_SetString(inference_error, e.what());
    } catch (const LoadError& e) {
      PyErr_SetString(model_load_error, e.what());
    } catch (const InputError& e) {
      PyErr_SetString(input_error, e.what());
    } catch (const OptionError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const Error& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    } catch (const torch::jit::schema_match_error& e) {
      PyErr_SetString(argument_error, e.what());
    } catch (const c10::Error& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what_without_backtrace());
    }
  });
}

// A TorchScript class instance that a model's method returned, with the model that runs its
// methods (kept alive by it).
struct ScriptObject {
  std::shared_ptr<const Model> model;
  c10::intrusive_ptr<c10::ivalue::Object> object;
};

// A value leaving the core (a method's result, an attribute) -> Python; `what` names it in
// errors. Class instances become ScriptObjects (torch's own conversion needs the class's Python
// definition, which a deployment does not have); the rest is torch's.
py::object to_python(const std::shared_ptr<const Model>& model, c10::IValue value,
                     const std::string& what) {
  if (is_script_object(value)) return py::cast(ScriptObject{model, value.toObject()});
  if (holds_script_object(value)) {
    if (value.isList()) {
      py::list list;
      for (const auto& element : value.toListRef()) list.append(to_python(model, element, what));
      return list;
    }
    if (value.isTuple()) {
      const auto& elements = value.toTupleRef().elements();
      py::tuple tuple(elements.size());
      for (size_t i = 0; i < elements.size(); ++i) tuple[i] = to_python(model, elements[i], what);
      return tuple;
    }
    py::dict dict;
    for (const auto& entry : value.toGenericDict()) {
      dict[to_python(model, entry.key(), what)] = to_python(model, entry.value(), what);
    }
    return dict;
  }
  try {
    return torch::jit::toPyObject(std::move(value));
  } catch (const c10::Error& e) {
    throw InferenceError(
        what + " is a " + value.type()->repr_str() +
        ", which cannot be converted to Python: " + first_line(e.what_without_backtrace()));
  }
}

// A ScriptObject's attributes, converted, in its class's order.
py::dict attributes_of(const ScriptObject& self) {
  py::dict values;
  for (auto& [name, value] : object_attributes(*self.object)) {
    values[py::str(name)] =
        to_python(self.model, value,
                  "attribute '" + name + "' of a " + object_type_name(*self.object) + " object");
  }
  return values;
}

// Whether a Python argument is or holds (in tuples, lists, dict values) a ScriptObject.
bool argument_holds_script_object(const py::handle& value) {
  if (py::isinstance<ScriptObject>(value)) return true;
  if (py::isinstance<py::tuple>(value) || py::isinstance<py::list>(value)) {
    for (const auto& element : value) {
      if (argument_holds_script_object(element)) return true;
    }
  } else if (py::isinstance<py::dict>(value)) {
    for (const auto& item : py::reinterpret_borrow<py::dict>(value)) {
      if (argument_holds_script_object(item.second)) return true;
    }
  }
  return false;
}

// ScriptObjects inside a Python argument that holds some -> the torch.jit.ScriptObject that
// torch's argument conversion (createStackForSchema) takes for a class-typed argument. Each load
// has its own classes: an object goes back only into the model that made it.
py::object unwrap_script_objects(const py::handle& value, const Model& target) {
  if (py::isinstance<ScriptObject>(value)) {
    const auto& script_object = py::cast<const ScriptObject&>(value);
    if (script_object.model.get() != &target) {
      throw ArgumentError("this " + object_type_name(*script_object.object) +
                          " object was made by another loaded model (" +
                          script_object.model->source() +
                          "): objects go back only into the model that returned them");
    }
    return py::cast(torch::jit::Object(script_object.object));
  }
  if (py::isinstance<py::tuple>(value) || py::isinstance<py::list>(value)) {
    py::list elements;
    for (const auto& element : value) elements.append(unwrap_script_objects(element, target));
    return py::isinstance<py::tuple>(value) ? py::object(py::tuple(elements)) : elements;
  }
  if (py::isinstance<py::dict>(value)) {
    py::dict dict;
    for (const auto& item : py::reinterpret_borrow<py::dict>(value)) {
      dict[item.first] = unwrap_script_objects(item.second, target);
    }
    return dict;
  }
  return py::reinterpret_borrow<py::object>(value);
}

// A Python value's type as the user knows it: "numpy.ndarray", "str".
std::string python_type_name(const py::handle& value) {
  const auto type = py::type::of(value);
  const auto module = py::cast<std::string>(type.attr("__module__"));
  const auto name = py::cast<std::string>(type.attr("__qualname__"));
  return module == "builtins" ? name : module + "." + name;
}

// The first argument that cannot become its parameter's type, said in the user's terms (torch's
// own message prints the whole value, numpy arrays included, and pybind11's cast details);
// "" if each converts alone (then the call as a whole is what does not fit).
std::string argument_mismatch(const c10::FunctionSchema& signature, const std::string& method,
                              const py::args& args, const py::kwargs& kwargs) {
  const auto& parameters = signature.arguments();
  const auto explain = [&](const c10::Argument& parameter, const py::handle& value,
                           const std::string& where) -> std::string {
    try {
      torch::jit::toIValue(value, parameter.type());
      return "";
    } catch (const std::exception&) {
    }
    const std::string given = python_type_name(value);
    std::string hint;
    if (given == "numpy.ndarray" && parameter.type()->kind() == c10::TypeKind::TensorType) {
      hint = "; convert it with torch.from_numpy(array)";
    } else if ((py::isinstance<py::list>(value) || py::isinstance<py::tuple>(value)) &&
               parameter.type()->kind() == c10::TypeKind::TensorType) {
      hint = "; make it a tensor with torch.tensor(...)";
    }
    return method + "() argument '" + parameter.name() + "' (" + where + ") must be " +
           parameter.type()->annotation_str() + ", not " + given + hint +
           ". Declaration: " + c10::str(signature);
  };
  for (size_t i = 0; i < args.size() && i < parameters.size(); ++i) {
    auto found = explain(parameters[i], args[i], "position " + std::to_string(i + 1));
    if (!found.empty()) return found;
  }
  for (const auto& item : kwargs) {
    const auto index = signature.argumentIndexWithName(py::cast<std::string>(item.first));
    if (!index) continue;
    auto found = explain(parameters[*index], item.second, "keyword");
    if (!found.empty()) return found;
  }
  return "";
}

// Python arguments -> the stack of a method of `model` with this signature (without self).
torch::jit::Stack to_stack(const Model& model, const c10::FunctionSchema& signature,
                           const std::string& method, const py::args& args,
                           const py::kwargs& kwargs) {
  // torch reports an unknown keyword only after counting arguments; name it first.
  for (const auto& item : kwargs) {
    const auto name = py::cast<std::string>(item.first);
    if (!signature.argumentIndexWithName(name)) {
      throw ArgumentError(method + "() got an unexpected keyword argument '" + name +
                          "'. Declaration: " + c10::str(signature));
    }
  }
  try {
    // The common call (tensors, numbers) goes to torch as it came: no copy of the arguments.
    if (!argument_holds_script_object(args) && !argument_holds_script_object(kwargs)) {
      return torch::jit::createStackForSchema(signature, args, kwargs, std::nullopt);
    }
    py::tuple positional(args.size());
    for (size_t i = 0; i < args.size(); ++i) positional[i] = unwrap_script_objects(args[i], model);
    py::kwargs named;
    for (const auto& item : kwargs) named[item.first] = unwrap_script_objects(item.second, model);
    return torch::jit::createStackForSchema(signature, positional, named, std::nullopt);
  } catch (const torch::jit::schema_match_error&) {
    const auto mismatch = argument_mismatch(signature, method, args, kwargs);
    if (mismatch.empty()) throw;
    throw ArgumentError(mismatch);
  }
}

// One warm-up argument, typed by its value (the method's schema is unknown before the load):
// what forward takes besides tensors — numbers, strings, None, and tuples or lists of them.
c10::IValue to_warmup_value(const py::handle& value) {
  if (THPVariable_Check(value.ptr())) return THPVariable_Unpack(value.ptr());
  if (value.is_none()) return c10::IValue();
  if (py::isinstance<py::bool_>(value)) return py::cast<bool>(value);
  if (py::isinstance<py::int_>(value)) return py::cast<int64_t>(value);
  if (py::isinstance<py::float_>(value)) return py::cast<double>(value);
  if (py::isinstance<py::str>(value)) return py::cast<std::string>(value);
  if (py::isinstance<py::tuple>(value)) {
    std::vector<c10::IValue> elements;
    for (const auto& element : value) elements.push_back(to_warmup_value(element));
    return c10::ivalue::Tuple::create(std::move(elements));
  }
  if (py::isinstance<py::list>(value) && py::len(value) > 0) {
    std::vector<c10::IValue> elements;
    for (const auto& element : value) elements.push_back(to_warmup_value(element));
    c10::impl::GenericList list(elements.front().type());
    for (auto& element : elements) {
      if (*element.type() != *list.elementType()) {
        throw py::type_error("a list whose elements differ in type");
      }
      list.push_back(std::move(element));
    }
    return list;
  }
  throw py::type_error(std::string(py::str(py::type::of(value).attr("__name__"))));
}

// Warm-up arguments: forward's arguments as a call passes them.
std::vector<c10::IValue> to_warmup_inputs(const py::sequence& inputs) {
  std::vector<c10::IValue> values;
  for (size_t i = 0; i < inputs.size(); ++i) {
    try {
      values.push_back(to_warmup_value(inputs[i]));
    } catch (const py::type_error& e) {
      throw py::type_error("warmup_inputs[" + std::to_string(i) +
                           "] cannot be a model argument: " + e.what() +
                           " (tensors, numbers, strings, None and tuples or lists of them can)");
    }
  }
  return values;
}

py::object call_method(const std::shared_ptr<Model>& model, const std::string& method,
                       const py::args& args, const py::kwargs& kwargs) {
  auto stack = to_stack(*model, model->signature(method), method, args, kwargs);
  c10::IValue output;
  {
    py::gil_scoped_release no_gil;
    output = model->run(method, std::move(stack));
  }
  return to_python(model, std::move(output), "the result of " + method + "()");
}

py::object call_object_method(const ScriptObject& self, const std::string& method,
                              const py::args& args, const py::kwargs& kwargs) {
  const auto found = find_object_method(*self.object, method);
  const auto name = object_type_name(*self.object) + "." + method;
  auto stack = to_stack(*self.model, found.signature, name, args, kwargs);
  c10::IValue output;
  {
    py::gil_scoped_release no_gil;
    output = self.model->run_object_method(self.object, method, std::move(stack));
  }
  return to_python(self.model, std::move(output), "the result of " + name + "()");
}

void bind_script_object(py::module_& m) {
  py::class_<ScriptObject>(m, "ScriptObject",
                           "An instance of a TorchScript class that a model's method returned: "
                           "attributes readable, methods callable, and it can be passed back "
                           "into the model's methods.")
      .def_property_readonly(
          "type_name", [](const ScriptObject& self) { return object_type_name(*self.object); })
      .def_property_readonly("methods",
                             [](const ScriptObject& self) { return object_methods(*self.object); })
      .def_property_readonly("attributes", &attributes_of)
      .def("call", &call_object_method, py::arg("method"))
      .def("__getattr__",
           [](const py::object& self, const std::string& name) -> py::object {
             const auto& script_object = py::cast<const ScriptObject&>(self);
             const auto& object = *script_object.object;
             const py::dict attributes = attributes_of(script_object);
             if (attributes.contains(name)) return attributes[py::str(name)];
             const auto methods = object_methods(object);
             if (std::find(methods.begin(), methods.end(), name) != methods.end()) {
               return py::module_::import("functools").attr("partial")(self.attr("call"), name);
             }
             std::string known;
             for (const auto& item : attributes) {
               known += (known.empty() ? "" : ", ") + py::cast<std::string>(item.first);
             }
             for (const auto& method : methods) known += (known.empty() ? "" : ", ") + method;
             throw py::attribute_error("a " + object_type_name(object) +
                                       " object has no attribute or method '" + name +
                                       "' (it has: " + known + ")");
           })
      .def("__dir__",
           [](const ScriptObject& self) {
             std::vector<std::string> names{"attributes", "call", "methods", "type_name"};
             for (auto& [name, value] : object_attributes(*self.object)) names.push_back(name);
             for (const auto& method : object_methods(*self.object)) names.push_back(method);
             return names;
           })
      .def("__repr__", [](const ScriptObject& self) {
        std::string text = "tsnative.ScriptObject(" + object_type_name(*self.object);
        const char* separator = ": ";
        for (const auto& item : attributes_of(self)) {
          text += separator + py::cast<std::string>(item.first) + "=" +
                  py::cast<std::string>(py::repr(item.second));
          separator = ", ";
        }
        return text + ")";
      });
}

// Called by the core between batches, which runs without the GIL: Python's signal handlers
// run (Ctrl-C raises KeyboardInterrupt there, which stops classify within a batch), then the
// Python progress function (done, total), if any.
ProgressCallback progress_callback(const std::optional<py::function>& progress) {
  return [&progress](const std::vector<Classification>&, size_t done, size_t total) {
    py::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    if (progress) (*progress)(done, total);
  };
}

void bind_model(py::module_& m) {
  py::class_<LoadOptions>(m, "LoadOptions")
      .def(py::init<>())
      .def_readwrite("device", &LoadOptions::device)
      .def_property(
          "optimize",
          [](const LoadOptions& options) { return optimize_level_name(options.optimize); },
          [](LoadOptions& options, const std::string& name) {
            options.optimize = parse_optimize_level(name);
          })
      .def_property(
          "warmup_inputs", [](const LoadOptions&) { return py::none(); },
          [](LoadOptions& options, const py::sequence& inputs) {
            options.warmup_inputs = to_warmup_inputs(inputs);
          })
      .def_readwrite("warmup_runs", &LoadOptions::warmup_runs)
      .def_readwrite("choice_cache_dir", &LoadOptions::choice_cache_dir);

  py::class_<Model, std::shared_ptr<Model>>(m, "Model")
      .def_static(
          "load",
          [](const std::string& path, const LoadOptions& options) {
            py::gil_scoped_release no_gil;
            return Model::load(path, options);
          },
          py::arg("path"), py::arg("options"))
      .def_static(
          "load_from_memory",
          [](const py::buffer& data, const LoadOptions& options) {
            // Read in place, not copied: `data` stays referenced by this call's arguments.
            const py::buffer_info info = data.request();
            if (!PyBuffer_IsContiguous(info.view(), 'A')) {
              throw LoadError("cannot load a model from a non-contiguous buffer");
            }
            const auto size = static_cast<size_t>(info.size * info.itemsize);
            py::gil_scoped_release no_gil;
            return Model::load_from_memory(info.ptr, size, options);
          },
          py::arg("data"), py::arg("options"))
      .def("call", &call_method, py::arg("method"))
      .def("named_parameters", &Model::named_parameters)
      .def("named_buffers", &Model::named_buffers)
      .def("attributes",
           [](const std::shared_ptr<Model>& model) {
             // The same conversion as results: an attribute may hold a class instance too.
             py::dict values;
             for (auto& [name, value] : model->attributes()) {
               values[py::str(name)] = to_python(model, value, "attribute '" + name + "'");
             }
             return values;
           })
      .def(
          "topk",
          [](const Model& model, std::optional<int64_t> k, const py::args& args,
             const py::kwargs& kwargs) {
            auto stack = to_stack(model, model.signature("forward"), "forward", args, kwargs);
            py::gil_scoped_release no_gil;
            auto top = softmax_topk(model.forward(std::move(stack)), k);
            return std::make_pair(top.probabilities, top.indices);
          },
          py::arg("k"))
      .def_property_readonly("methods", &Model::methods)
      .def("has_method", &Model::has_method, py::arg("name"))
      .def(
          "signature",
          [](const Model& model, const std::string& method) {
            return c10::str(model.signature(method));
          },
          py::arg("method"))
      .def(
          "classify",
          [](const Model& model, const std::vector<std::string>& paths,
             const ClassifyOptions& options, const std::optional<py::function>& progress) {
            const auto callback = progress_callback(progress);
            py::gil_scoped_release no_gil;
            return classify(model, paths, options, callback);
          },
          py::arg("paths"), py::arg("options"), py::arg("progress") = py::none())
      .def_property_readonly("metadata", &Model::metadata)
      .def_property_readonly("optimization", &Model::optimization)
      .def_property_readonly("path", &Model::path)
      .def_property_readonly("source", &Model::source)
      .def_property_readonly("device", [](const Model& model) { return model.device().str(); });
}

// A Python model's output as class scores: a tensor, or the error top-k gives for anything else.
at::Tensor class_scores(const py::object& output) {
  if (!THPVariable_Check(output.ptr())) {
    throw InferenceError("top-k needs the model to return a tensor, but it returned a " +
                         std::string(py::str(output.get_type().attr("__name__"))));
  }
  return THPVariable_Unpack(output.ptr());
}

void bind_images(py::module_& m) {
  py::class_<Preprocess>(m, "Preprocess")
      .def(py::init<>())
      .def_readwrite("resize", &Preprocess::resize)
      .def_readwrite("crop", &Preprocess::crop)
      .def_readwrite("mean", &Preprocess::mean)
      .def_readwrite("std", &Preprocess::std)
      .def_property(
          "color", [](const Preprocess& p) { return color_mode_name(p.color); },
          [](Preprocess& p, const std::string& name) { p.color = parse_color_mode(name); });
  py::class_<PreprocessOverrides>(m, "PreprocessOverrides")
      .def(py::init<>())
      .def_readwrite("resize", &PreprocessOverrides::resize)
      .def_readwrite("crop", &PreprocessOverrides::crop)
      .def_readwrite("mean", &PreprocessOverrides::mean)
      .def_readwrite("std", &PreprocessOverrides::std)
      .def_property(
          "color",
          [](const PreprocessOverrides& o) -> std::optional<std::string> {
            if (!o.color) return std::nullopt;
            return std::string(color_mode_name(*o.color));
          },
          [](PreprocessOverrides& o, const std::optional<std::string>& name) {
            o.color = name ? std::optional<ColorMode>(parse_color_mode(*name)) : std::nullopt;
          });
  m.def("apply_overrides", &apply_overrides, py::arg("base"), py::arg("overrides"));
  m.def(
      "decode_image",
      [](const std::string& path, const std::string& color) {
        const auto mode = parse_color_mode(color);
        py::gil_scoped_release no_gil;
        return decode_image(path, mode);
      },
      py::arg("path"), py::arg("color"));
  m.def(
      "load_image",
      [](const std::string& path, const Preprocess& spec) {
        py::gil_scoped_release no_gil;
        return load_image(path, spec);
      },
      py::arg("path"), py::arg("spec"));

  py::class_<Metadata>(m, "Metadata")
      .def(py::init<>())
      .def_readwrite("labels", &Metadata::labels)
      .def_readwrite("preprocess", &Metadata::preprocess)
      .def_readwrite("input_shape", &Metadata::input_shape)
      .def_readwrite("input_dtype", &Metadata::input_dtype)
      .def_readwrite("tsnative_version", &Metadata::tsnative_version)
      .def_readwrite("export_method", &Metadata::export_method)
      .def_readwrite("quantization", &Metadata::quantization)
      .def("to_json", [](const Metadata& metadata) { return to_json(metadata); })
      .def_static("from_json", &parse_metadata, py::arg("text"), py::arg("source"));
  m.attr("METADATA_FILE") = kMetadataFile;
  m.attr("PACKAGE_INPUTS_KEY") = kInputsMetadataKey;
  m.attr("PACKAGE_CPU_FLAGS_KEY") = kCpuFlagsMetadataKey;
  m.attr("PACKAGE_STATIC_BATCHES_KEY") = kStaticBatchesMetadataKey;
  m.attr("PACKAGE_INDUCTOR_CONFIGS_KEY") = kInductorConfigsMetadataKey;
  m.attr("PACKAGE_MODEL_NAME") = kPackageModelName;
  m.def("static_model_name", &static_model_name, py::arg("batch"));
  m.def("resolve_labels", &resolve_labels, py::arg("spec"));
  m.def(
      "softmax_topk",
      [](const py::object& output, std::optional<int64_t> k) {
        const auto top = softmax_topk(class_scores(output), k);
        return std::make_pair(top.probabilities, top.indices);
      },
      py::arg("output"), py::arg("k"));
  m.def("optimize_levels", [] {
    std::vector<std::pair<std::string, std::string>> levels;
    for (const auto& level : optimize_levels()) levels.emplace_back(level.name, level.summary);
    return levels;
  });
  m.def(
      "sniff_model_format",
      [](const py::bytes& first_bytes) {
        const std::string bytes = first_bytes;
        return model_format_name(sniff_model_format(bytes.data(), bytes.size()));
      },
      py::arg("first_bytes"));

  py::class_<Prediction>(m, "Prediction")
      .def_readonly("index", &Prediction::index)
      .def_readonly("probability", &Prediction::probability)
      .def_readonly("label", &Prediction::label);
  py::class_<Classification>(m, "Classification")
      .def_readonly("path", &Classification::path)
      .def_readonly("predictions", &Classification::predictions)
      .def_readonly("error", &Classification::error);
  py::class_<ClassifyOptions>(m, "ClassifyOptions")
      .def(py::init<>())
      .def_readwrite("k", &ClassifyOptions::k)
      .def_readwrite("batch_size", &ClassifyOptions::batch_size)
      .def_readwrite("preprocess", &ClassifyOptions::preprocess)
      .def_readwrite("labels", &ClassifyOptions::labels);
  m.def("expand_image_paths", &expand_image_paths, py::arg("paths"));
  // classify() for a model the Python API runs (ONNX Runtime): decoding, preprocessing,
  // batching, top-k and labels stay in the core; `run` gets each batch.
  m.def(
      "classify_batches",
      [](const py::function& run, const Metadata& metadata, const std::vector<std::string>& paths,
         const ClassifyOptions& options, const std::optional<py::function>& progress) {
        const BatchRunner run_batch = [&run](const at::Tensor& batch) -> c10::IValue {
          py::gil_scoped_acquire gil;
          return class_scores(run(batch));
        };
        const auto callback = progress_callback(progress);
        py::gil_scoped_release no_gil;
        return classify(run_batch, metadata, paths, options, callback);
      },
      py::arg("run"), py::arg("metadata"), py::arg("paths"), py::arg("options"),
      py::arg("progress") = py::none());
}

void bind_runtime(py::module_& m) {
  m.def("set_num_threads", &set_num_threads, py::arg("n"));
  m.def("set_num_interop_threads", &set_num_interop_threads, py::arg("n"));
  m.def("load_library", &load_library, py::arg("path"), py::call_guard<py::gil_scoped_release>());
  m.def("cpu_has_native_bf16", &cpu_has_native_bf16);
  m.def("cpu_has_vnni", &cpu_has_vnni);
  m.def("get_num_threads", &num_threads);
  m.def("cuda_available", &cuda_available);
  m.def("torch_version", &torch_version);
  m.attr("__version__") = TSNATIVE_VERSION;
}

}  // namespace
}  // namespace tsnative

PYBIND11_MODULE(_C, m) {
  m.doc() = "tsnative's compiled core; use the public API in the tsnative package.";
  tsnative::bind_errors(m);
  tsnative::bind_images(m);  // before bind_model: Model's signatures use these types
  tsnative::bind_script_object(m);
  tsnative::bind_model(m);
  tsnative::bind_runtime(m);
}

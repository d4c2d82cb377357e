// tsnative._C: conversions between Python and the core, the GIL, and error translation.
// Nothing here decides behaviour; that lives in csrc/core.
#include <torch/csrc/jit/python/pybind_utils.h>
#include <torch/extension.h>

#include "core/errors.h"
#include "core/model.h"
#include "core/postprocess.h"
#include "core/runtime.h"

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

// Python arguments -> the method's stack, converted by its TorchScript signature.
torch::jit::Stack to_stack(const Model& model, const std::string& method, const py::args& args,
                           const py::kwargs& kwargs) {
  const auto& signature = model.signature(method);
  // torch reports an unknown keyword only after counting arguments; name it first.
  for (const auto& item : kwargs) {
    const auto name = py::cast<std::string>(item.first);
    if (!signature.argumentIndexWithName(name)) {
      throw ArgumentError(method + "() got an unexpected keyword argument '" + name +
                          "'. Declaration: " + c10::str(signature));
    }
  }
  return torch::jit::createStackForSchema(signature, args, kwargs, std::nullopt);
}

py::object call_method(const Model& model, const std::string& method, const py::args& args,
                       const py::kwargs& kwargs) {
  auto stack = to_stack(model, method, args, kwargs);
  c10::IValue output;
  {
    py::gil_scoped_release no_gil;
    output = model.run(method, std::move(stack));
  }
  return torch::jit::toPyObject(std::move(output));
}

void bind_model(py::module_& m) {
  py::class_<LoadOptions>(m, "LoadOptions")
      .def(py::init<>())
      .def_readwrite("device", &LoadOptions::device);

  py::class_<Model, std::shared_ptr<Model>>(m, "Model")
      .def_static(
          "load",
          [](const std::string& path, const LoadOptions& options) {
            py::gil_scoped_release no_gil;
            return Model::load(path, options);
          },
          py::arg("path"), py::arg("options"))
      .def("call", &call_method, py::arg("method"))
      .def(
          "topk",
          [](const Model& model, int64_t k, const py::args& args, const py::kwargs& kwargs) {
            auto stack = to_stack(model, "forward", args, kwargs);
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
      .def_property_readonly("path", &Model::path)
      .def_property_readonly("device", [](const Model& model) { return model.device().str(); });
}

void bind_runtime(py::module_& m) {
  m.def("set_num_threads", &set_num_threads, py::arg("n"));
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
  tsnative::bind_model(m);
  tsnative::bind_runtime(m);
}

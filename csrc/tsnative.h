// The tsnative C++ API, for programs of their own: the same core as the Python package and
// ts-infer. Link tsnative::core (find_package(tsnative CONFIG)); see examples/cpp/.
//
//   auto model = tsnative::Model::load("classifier.pt");
//   const auto output = model->forward({torch::rand({1, 3, 224, 224})});
//   const auto results = tsnative::classify(*model, {"tiger.jpg"});
//
// Every error is a tsnative::Error (LoadError, InferenceError, ArgumentError, InputError,
// OptionError), with the cause in its message.
#pragma once

#include "core/classify.h"
#include "core/errors.h"
#include "core/image.h"
#include "core/load_options.h"
#include "core/metadata.h"
#include "core/model.h"
#include "core/postprocess.h"
#include "core/runtime.h"
#include "core/tensor_io.h"

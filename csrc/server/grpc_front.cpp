#include "server/grpc_front.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <mutex>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/resource_quota.h>

#include "core/errors.h"
#include "grpc_predict_v2.grpc.pb.h"
#include "server/protocol.h"

namespace tsnative::server {

namespace {

namespace oip = inference;

grpc::Status status_of(const ProtocolError& error) {
  const auto code = [&] {
    switch (error.status()) {
      case 400:
        return grpc::StatusCode::INVALID_ARGUMENT;
      case 404:
        return grpc::StatusCode::NOT_FOUND;
      case 413:
        return grpc::StatusCode::RESOURCE_EXHAUSTED;
      case 503:
        return grpc::StatusCode::UNAVAILABLE;
      default:
        return grpc::StatusCode::INTERNAL;
    }
  }();
  return {code, error.what()};
}

// The codes this front answers with, by their names in the gRPC docs (for the log).
std::string code_name(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    default:
      return "status " + std::to_string(static_cast<int>(code));
  }
}

// Typed contents into the tensor: `values` (one repeated field of InferTensorContents) hold
// the elements; narrower datatypes travel in a wider field and must fit.
template <typename T, typename Values>
void copy_contents(const Values& values, ProtocolTensor& tensor, int64_t elements,
                   const char* field_name, const std::string& where) {
  if (static_cast<int64_t>(values.size()) != elements) {
    throw ProtocolError(where + ": " + field_name + " has " + std::to_string(values.size()) +
                        " elements, its shape " + std::to_string(elements));
  }
  tensor.tensor = at::empty(tensor.shape, *scalar_type(tensor.datatype));
  auto* out = tensor.tensor.data_ptr<T>();
  for (int64_t i = 0; i < elements; ++i) {
    const auto value = values[static_cast<int>(i)];
    if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
      if (value < std::numeric_limits<T>::min() || value > std::numeric_limits<T>::max()) {
        throw ProtocolError(where + ": " + std::to_string(value) + " is out of " +
                            datatype_name(tensor.datatype) + "'s range");
      }
    }
    out[i] = static_cast<T>(value);
  }
}

std::vector<std::string> keys_of(
    const google::protobuf::Map<std::string, oip::ModelRepositoryParameter>& parameters) {
  std::vector<std::string> keys;
  for (const auto& [key, value] : parameters) keys.push_back(key);
  return keys;
}

void fill_from_contents(ProtocolTensor& tensor, const oip::InferTensorContents& contents,
                        int64_t elements, const std::string& where) {
  switch (tensor.datatype) {
    case DataType::kBool:
      return copy_contents<bool>(contents.bool_contents(), tensor, elements, "bool_contents",
                                 where);
    case DataType::kUint8:
      return copy_contents<uint8_t>(contents.uint_contents(), tensor, elements, "uint_contents",
                                    where);
    case DataType::kUint16:
      return copy_contents<uint16_t>(contents.uint_contents(), tensor, elements, "uint_contents",
                                     where);
    case DataType::kUint32:
      return copy_contents<uint32_t>(contents.uint_contents(), tensor, elements, "uint_contents",
                                     where);
    case DataType::kUint64:
      return copy_contents<uint64_t>(contents.uint64_contents(), tensor, elements,
                                     "uint64_contents", where);
    case DataType::kInt8:
      return copy_contents<int8_t>(contents.int_contents(), tensor, elements, "int_contents",
                                   where);
    case DataType::kInt16:
      return copy_contents<int16_t>(contents.int_contents(), tensor, elements, "int_contents",
                                    where);
    case DataType::kInt32:
      return copy_contents<int32_t>(contents.int_contents(), tensor, elements, "int_contents",
                                    where);
    case DataType::kInt64:
      return copy_contents<int64_t>(contents.int64_contents(), tensor, elements, "int64_contents",
                                    where);
    case DataType::kFp32:
      return copy_contents<float>(contents.fp32_contents(), tensor, elements, "fp32_contents",
                                  where);
    case DataType::kFp64:
      return copy_contents<double>(contents.fp64_contents(), tensor, elements, "fp64_contents",
                                   where);
    case DataType::kFp16:
    case DataType::kBf16:
      throw ProtocolError(where + ": " + datatype_name(tensor.datatype) +
                          " has no typed contents: send it in raw_input_contents");
    case DataType::kBytes:
      if (static_cast<int64_t>(contents.bytes_contents_size()) != elements) {
        throw ProtocolError(where + ": bytes_contents has " +
                            std::to_string(contents.bytes_contents_size()) +
                            " elements, its shape " + std::to_string(elements));
      }
      tensor.bytes.assign(contents.bytes_contents().begin(), contents.bytes_contents().end());
      return;
  }
}

// The protocol's request from gRPC's message (the same checks as a JSON body's).
InferRequest infer_request(const oip::ModelInferRequest& message, const RequestLimits& limits) {
  InferRequest request;
  request.id = message.id();
  if (message.inputs_size() == 0) throw ProtocolError("the request has no 'inputs'");
  const bool raw = message.raw_input_contents_size() > 0;
  if (raw && message.raw_input_contents_size() != message.inputs_size()) {
    throw ProtocolError(std::to_string(message.raw_input_contents_size()) +
                        " raw_input_contents for " + std::to_string(message.inputs_size()) +
                        " inputs: give one per input, or none");
  }
  for (int i = 0; i < message.inputs_size(); ++i) {
    const auto& input = message.inputs(i);
    ProtocolTensor tensor;
    tensor.name = input.name();
    const auto where = "input " + tsnative::quoted(tensor.name);
    const auto datatype = parse_datatype(input.datatype());
    if (!datatype) {
      throw ProtocolError(where + ": unknown datatype " + tsnative::quoted(input.datatype()));
    }
    tensor.datatype = *datatype;
    tensor.shape.assign(input.shape().begin(), input.shape().end());
    const auto elements = checked_elements(tensor.shape, where, limits);
    if (raw) {
      if (input.has_contents()) {
        throw ProtocolError(where + ": has both contents and raw_input_contents");
      }
      fill_from_raw(tensor, message.raw_input_contents(i), where);
    } else {
      fill_from_contents(tensor, input.contents(), elements, where);
    }
    for (const auto& other : request.inputs) {
      if (other.name == tensor.name) throw ProtocolError(where + " is given twice");
    }
    request.inputs.push_back(std::move(tensor));
  }
  for (const auto& output : message.outputs()) {
    RequestedOutput requested;
    requested.name = output.name();
    requested.binary_data = true;
    const auto found = output.parameters().find("classification");
    if (found != output.parameters().end()) {
      if (found->second.parameter_choice_case() != oip::InferParameter::kInt64Param ||
          found->second.int64_param() < 1) {
        throw ProtocolError("output " + tsnative::quoted(requested.name) +
                            ": 'classification' must be a whole number, at least 1");
      }
      requested.classification = found->second.int64_param();
    }
    request.outputs.push_back(std::move(requested));
  }
  request.binary_data_output = true;  // gRPC's answers are raw bytes, as Triton's are
  return request;
}

void describe(const std::vector<TensorDescription>& tensors,
              google::protobuf::RepeatedPtrField<oip::ModelMetadataResponse::TensorMetadata>* out) {
  for (const auto& tensor : tensors) {
    auto* entry = out->Add();
    entry->set_name(tensor.name);
    entry->set_datatype(datatype_name(tensor.datatype));
    for (const auto size : tensor.shape) entry->add_shape(size);
  }
}

uint64_t microseconds_since(std::chrono::steady_clock::time_point start) {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                   std::chrono::steady_clock::now() - start)
                                   .count());
}

class Service final : public oip::GRPCInferenceService::Service {
 public:
  Service(ServedModels& models, const std::atomic<bool>& ready, LogLine log, bool log_requests)
      : models_(models), ready_(ready), log_(std::move(log)), log_requests_(log_requests) {}

  RequestLimits limits;

  grpc::Status ServerLive(grpc::ServerContext*, const oip::ServerLiveRequest*,
                          oip::ServerLiveResponse* response) override {
    response->set_live(true);
    return grpc::Status::OK;
  }

  grpc::Status ServerReady(grpc::ServerContext*, const oip::ServerReadyRequest*,
                           oip::ServerReadyResponse* response) override {
    response->set_ready(ready_.load());
    return grpc::Status::OK;
  }

  grpc::Status ModelReady(grpc::ServerContext*, const oip::ModelReadyRequest* request,
                          oip::ModelReadyResponse* response) override {
    // An unknown model or version is not ready, not an error: Triton answers so too, and
    // clients ask before the model is there.
    return guarded([&] {
      try {
        response->set_ready(models_.is_ready(request->name(), request->version()));
      } catch (const ProtocolError& e) {
        if (e.status() != 404) throw;
        response->set_ready(false);
      }
    });
  }

  grpc::Status ServerMetadata(grpc::ServerContext*, const oip::ServerMetadataRequest*,
                              oip::ServerMetadataResponse* response) override {
    response->set_name("tsnative");
    response->set_version(TSNATIVE_VERSION);
    for (const auto& extension : server_extensions()) response->add_extensions(extension);
    return grpc::Status::OK;
  }

  grpc::Status ModelMetadata(grpc::ServerContext*, const oip::ModelMetadataRequest* request,
                             oip::ModelMetadataResponse* response) override {
    return guarded([&] {
      const auto found = models_.find_ready(request->name(), request->version());
      const auto& entry = *found;
      response->set_name(entry.source.name);
      for (const auto& version : models_.versions(entry.source.name)) {
        response->add_versions(version);
      }
      response->set_platform(entry.model->platform());
      describe(entry.model->inputs(), response->mutable_inputs());
      describe(entry.model->outputs(), response->mutable_outputs());
    });
  }

  grpc::Status RepositoryIndex(grpc::ServerContext*, const oip::RepositoryIndexRequest* request,
                               oip::RepositoryIndexResponse* response) override {
    return guarded([&] {
      for (const auto& row : models_.index()) {
        if (request->ready() && row.state != "READY") continue;
        auto* model = response->add_models();
        model->set_name(row.name);
        model->set_version(row.version);
        model->set_state(row.state);
        model->set_reason(row.reason);
      }
    });
  }

  grpc::Status RepositoryModelLoad(grpc::ServerContext* context,
                                   const oip::RepositoryModelLoadRequest* request,
                                   oip::RepositoryModelLoadResponse*) override {
    const auto status =
        guarded([&] { models_.load(request->model_name(), keys_of(request->parameters())); });
    log_call(context, "RepositoryModelLoad", request->model_name(), status);
    return status;
  }

  grpc::Status RepositoryModelUnload(grpc::ServerContext* context,
                                     const oip::RepositoryModelUnloadRequest* request,
                                     oip::RepositoryModelUnloadResponse*) override {
    const auto status =
        guarded([&] { models_.unload(request->model_name(), keys_of(request->parameters())); });
    log_call(context, "RepositoryModelUnload", request->model_name(), status);
    return status;
  }

  grpc::Status ModelInfer(grpc::ServerContext* context, const oip::ModelInferRequest* request,
                          oip::ModelInferResponse* response) override {
    const auto start = std::chrono::steady_clock::now();
    std::shared_ptr<const Entry> entry;
    const auto status = guarded([&] {
      entry = models_.find_ready(request->model_name(), request->model_version());
      const auto answer = models_.infer(*entry, infer_request(*request, limits));
      response->set_model_name(entry->source.name);
      response->set_model_version(entry->source.version);
      response->set_id(request->id());
      for (const auto& tensor : answer.tensors) {
        auto* output = response->add_outputs();
        output->set_name(tensor.name);
        output->set_datatype(datatype_name(tensor.datatype));
        for (const auto size : tensor.shape) output->add_shape(size);
        response->add_raw_output_contents(raw_bytes(tensor));
      }
    });
    if (entry) {
      (status.ok() ? entry->metrics->request_success : entry->metrics->request_failure) += 1;
      entry->metrics->request_duration_us += microseconds_since(start);
    }
    log_call(context, "ModelInfer", request->model_name(), status);
    return status;
  }

 private:
  // Runs a handler: the protocol's errors as their status codes, the core's (a model that
  // refused or failed on its inputs) as INVALID_ARGUMENT, anything else as INTERNAL.
  template <typename Handler>
  grpc::Status guarded(Handler&& handler) {
    try {
      handler();
      return grpc::Status::OK;
    } catch (const ProtocolError& e) {
      return status_of(e);
    } catch (const Error& e) {
      return {grpc::StatusCode::INVALID_ARGUMENT, e.what()};
    } catch (const std::exception& e) {
      return {grpc::StatusCode::INTERNAL, e.what()};
    }
  }

  void log_call(grpc::ServerContext* context, const char* rpc, const std::string& model,
                const grpc::Status& status) const {
    if (!log_requests_) return;
    log_(context->peer() + " gRPC " + rpc + " " + model + " " + code_name(status.error_code()) +
         (status.ok() ? "" : " " + status.error_message()));
  }

  ServedModels& models_;
  const std::atomic<bool>& ready_;
  LogLine log_;
  bool log_requests_;
};

}  // namespace

struct GrpcFront::Impl {
  Impl(ServedModels& models, const std::atomic<bool>& ready, LogLine log, bool log_requests)
      : service(models, ready, std::move(log), log_requests) {}
  Service service;
  std::unique_ptr<grpc::Server> server;
  std::once_flag stopped;
};

GrpcFront::GrpcFront(ServedModels& models, const std::atomic<bool>& ready, LogLine log,
                     bool log_requests)
    : impl_(std::make_unique<Impl>(models, ready, std::move(log), log_requests)) {}

GrpcFront::~GrpcFront() { stop(0); }

int GrpcFront::start(const std::string& host, int port, int64_t max_message_bytes,
                     int max_threads) {
  const auto limit =
      static_cast<int>(std::min<int64_t>(max_message_bytes, std::numeric_limits<int>::max()));
  grpc::ServerBuilder builder;
  int bound = 0;
  // IPv6 literals go in brackets, as gRPC's addresses take them.
  const auto address =
      (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &bound);
  builder.SetMaxReceiveMessageSize(limit);
  builder.SetMaxSendMessageSize(-1);  // answers are as large as the model makes them
  grpc::ResourceQuota quota("tsnative");
  quota.SetMaxThreads(max_threads);
  builder.SetResourceQuota(quota);
  builder.RegisterService(&impl_->service);
  impl_->server = builder.BuildAndStart();
  if (!impl_->server || bound == 0) {
    impl_->server.reset();
    throw OptionError("cannot listen for gRPC on " + address +
                      " (in use, or not an address of this machine)");
  }
  return bound;
}

void GrpcFront::stop(int grace_s) {
  if (!impl_->server) return;
  std::call_once(impl_->stopped, [&] {
    impl_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(grace_s));
    impl_->server->Wait();
  });
}

}  // namespace tsnative::server

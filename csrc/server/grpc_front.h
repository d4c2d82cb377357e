// KServe's Open Inference Protocol v2 over gRPC (inference.GRPCInferenceService, from
// proto/grpc_predict_v2.proto, with the distribution's gRPC C++) on the server's models: the
// same models, batchers, metrics and limits as the HTTP routes. Tensors arrive as raw bytes
// (raw_input_contents) or typed contents, and leave as raw bytes, as Triton answers.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "server/served_models.h"
#include "server/server.h"

namespace tsnative::server {

class GrpcFront {
 public:
  GrpcFront(ServedModels& models, const std::atomic<bool>& ready, LogLine log, bool log_requests);
  ~GrpcFront();
  GrpcFront(const GrpcFront&) = delete;
  GrpcFront& operator=(const GrpcFront&) = delete;

  // Binds host:port (0: any free port) and serves on gRPC's own threads from then on; returns
  // the port. Messages over max_message_bytes are refused (RESOURCE_EXHAUSTED). Throws
  // OptionError if the port cannot be bound.
  int start(const std::string& host, int port, int64_t max_message_bytes, int max_threads);

  // Refuses new calls; calls in flight get until `grace_s` to finish. Safe from any thread,
  // more than once.
  void stop(int grace_s);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tsnative::server

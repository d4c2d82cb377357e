#include "server/server.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <exception>
#include <limits>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "core/errors.h"
#include "server/grpc_front.h"
#include "server/protocol.h"
#include "server/served_models.h"

namespace tsnative::server {

namespace {

using nlohmann::json;

// How long an idle keep-alive connection stays open, and so the longest a shutdown waits for
// clients that are connected but send nothing.
constexpr time_t kKeepAliveSeconds = 2;

json tensors_json(const std::vector<TensorDescription>& tensors) {
  json out = json::array();
  for (const auto& tensor : tensors) {
    out.push_back({{"name", tensor.name},
                   {"datatype", datatype_name(tensor.datatype)},
                   {"shape", tensor.shape}});
  }
  return out;
}

void send_json(httplib::Response& response, int status, const json& body) {
  response.status = status;
  response.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace),
                       "application/json");
}

void send_error(httplib::Response& response, int status, const std::string& message) {
  response.status = status;
  response.set_content(error_body(message), "application/json");
}

uint64_t microseconds_since(std::chrono::steady_clock::time_point start) {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                   std::chrono::steady_clock::now() - start)
                                   .count());
}

std::optional<size_t> header_length(const httplib::Request& request) {
  if (!request.has_header("Inference-Header-Content-Length")) return std::nullopt;
  const auto text = request.get_header_value("Inference-Header-Content-Length");
  size_t length = 0;
  for (const char c : text) {
    if (c < '0' || c > '9' || length > std::numeric_limits<size_t>::max() / 10 - 1) {
      throw ProtocolError("Inference-Header-Content-Length must be a byte count, got " +
                          tsnative::quoted(text));
    }
    length = length * 10 + static_cast<size_t>(c - '0');
  }
  if (text.empty()) throw ProtocolError("Inference-Header-Content-Length is empty");
  return length;
}

// A repository request's body: empty, or a JSON object of the keys `allowed`. ProtocolError 400
// otherwise.
json repository_body(const std::string& body, const std::vector<std::string>& allowed) {
  if (body.empty()) return json::object();
  auto parsed = json::parse(body, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    throw ProtocolError("the request must be a JSON object");
  }
  for (const auto& [key, value] : parsed.items()) {
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      throw ProtocolError("unknown field " + tsnative::quoted(key));
    }
  }
  if (parsed.contains("ready") && !parsed["ready"].is_boolean()) {
    throw ProtocolError("'ready' must be true or false");
  }
  return parsed;
}

// The names of a load / unload request's "parameters".
std::vector<std::string> parameter_names(const json& body) {
  std::vector<std::string> names;
  if (!body.contains("parameters")) return names;
  if (!body["parameters"].is_object()) throw ProtocolError("'parameters' must be an object");
  for (const auto& [key, value] : body["parameters"].items()) names.push_back(key);
  return names;
}

}  // namespace

struct Server::State {
  ServerOptions options;
  LogLine log;
  std::unique_ptr<ServedModels> models;
  httplib::Server http;
  std::unique_ptr<GrpcFront> grpc;
  std::atomic<bool> ready{false};
  std::atomic<bool> stopped{false};
  std::atomic<bool> serving{false};        // serve() has started the listener
  std::atomic<bool> listener_done{false};  // ... and it has returned

  std::shared_ptr<const Entry> find_ready(const httplib::Request& request) const {
    return models->find_ready(request.matches[1], request.matches[2]);
  }

  void routes();
  void infer(const httplib::Request& request, httplib::Response& response);
  json model_metadata(const Entry& entry) const;
};

Server::Server(ServerOptions options, LogLine log) : state_(std::make_unique<State>()) {
  state_->options = std::move(options);
  state_->log = std::move(log);
  state_->models = std::make_unique<ServedModels>(state_->options.repository, state_->log);
  state_->routes();
}

Server::~Server() { stop(); }

Server::Ports Server::bind() {
  auto& http = state_->http;
  const auto& options = state_->options;
  const int threads = options.http_threads;
  http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  http.set_payload_max_length(static_cast<size_t>(options.max_request_bytes));
  http.set_read_timeout(options.timeout_s, 0);
  http.set_write_timeout(options.timeout_s, 0);
  http.set_keep_alive_max_count(std::numeric_limits<int>::max());
  // httplib's workers notice a stop only between requests: an idle keep-alive connection
  // holds its worker (and a shutdown) until this timeout, so it stays short.
  http.set_keep_alive_timeout(kKeepAliveSeconds);
  http.set_tcp_nodelay(true);
  const int port =
      options.http_port == 0
          ? http.bind_to_any_port(options.host)
          : (http.bind_to_port(options.host, options.http_port) ? options.http_port : -1);
  if (port < 0) {
    throw OptionError("cannot listen on " + options.host + ":" + std::to_string(options.http_port) +
                      " (in use, or not an address of this machine)");
  }
  Ports ports{port, -1};
  if (options.grpc_port >= 0) {
    state_->grpc = std::make_unique<GrpcFront>(*state_->models, state_->ready, state_->log,
                                               options.log_requests);
    ports.grpc = state_->grpc->start(options.host, options.grpc_port, options.max_request_bytes,
                                     options.http_threads);
  }
  return ports;
}

void Server::serve() {
  auto& state = *state_;
  state.serving = true;
  std::thread listener([&state] {
    state.http.listen_after_bind();
    state.listener_done = true;
  });
  std::exception_ptr failure;
  try {
    const auto loaded = state.models->load_at_start([&state] { return state.stopped.load(); });
    if (!state.stopped) state.log("ready: " + loaded);
    state.models->start_polling();
    state.ready = !state.stopped;
    if (state.stopped) stop();  // a stop() that came before the listener ran
  } catch (...) {
    failure = std::current_exception();
    stop();
  }
  listener.join();
  if (failure) std::rethrow_exception(failure);
}

void Server::stop() {
  state_->stopped = true;
  state_->ready = false;
  // gRPC's calls in flight finish (for up to --timeout), new ones are refused.
  if (state_->grpc) state_->grpc->stop(state_->options.timeout_s);
  state_->models->stop_polling();
  if (!state_->serving) return;
  // httplib's stop() before its listen loop has begun would be lost: wait for it to run.
  while (!state_->http.is_running() && !state_->listener_done) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  state_->http.stop();
}

json Server::State::model_metadata(const Entry& entry) const {
  return {{"name", entry.source.name},
          {"versions", models->versions(entry.source.name)},
          {"platform", entry.model->platform()},
          {"inputs", tensors_json(entry.model->inputs())},
          {"outputs", tensors_json(entry.model->outputs())}};
}

void Server::State::routes() {
  const auto guarded = [this](auto handler) {
    return [this, handler](const httplib::Request& request, httplib::Response& response) {
      try {
        handler(request, response);
      } catch (const ProtocolError& e) {
        send_error(response, e.status(), e.what());
      } catch (const std::exception& e) {
        send_error(response, 500, e.what());
      }
    };
  };
  const std::string model = R"(/v2/models/([^/]+)(?:/versions/([^/]+))?)";
  http.Get("/v2/health/live", [](const httplib::Request&, httplib::Response& response) {
    send_json(response, 200, {{"live", true}});
  });
  http.Get("/v2/health/ready", [this](const httplib::Request&, httplib::Response& response) {
    send_json(response, ready ? 200 : 503, {{"ready", ready.load()}});
  });
  http.Get("/v2", [](const httplib::Request&, httplib::Response& response) {
    send_json(
        response, 200,
        {{"name", "tsnative"}, {"version", TSNATIVE_VERSION}, {"extensions", server_extensions()}});
  });
  http.Get(model, guarded([this](const httplib::Request& request, httplib::Response& response) {
             send_json(response, 200, model_metadata(*find_ready(request)));
           }));
  http.Get(model + "/ready",
           guarded([this](const httplib::Request& request, httplib::Response& response) {
             const std::string name = request.matches[1];
             const bool model_ready = models->is_ready(name, request.matches[2]);
             send_json(response, model_ready ? 200 : 503, {{"name", name}, {"ready", model_ready}});
           }));
  http.Get(model + "/config",
           guarded([this](const httplib::Request& request, httplib::Response& response) {
             const auto found = find_ready(request);
             const auto& entry = *found;
             const auto& config = entry.model->config();
             send_json(response, 200,
                       {{"name", entry.source.name},
                        {"platform", entry.model->platform()},
                        {"max_batch_size", entry.model->batching() ? config.max_batch_size : 0},
                        {"dynamic_batching",
                         {{"preferred_batch_size", config.preferred_batch_sizes},
                          {"max_queue_delay_microseconds", config.max_queue_delay_us}}},
                        {"instance_group", {{{"count", config.instances}}}},
                        {"optimize", config.optimize},
                        {"optimization", entry.model->model().optimization()},
                        {"takes_images", entry.model->takes_images()}});
           }));
  http.Post(model + "/infer", [this](const httplib::Request& request, httplib::Response& response) {
    infer(request, response);
  });
  http.Get("/metrics", [this](const httplib::Request&, httplib::Response& response) {
    const auto serving = models->serving();
    std::vector<const ModelMetrics*> metrics;
    for (const auto& entry : serving) metrics.push_back(entry->metrics.get());
    response.set_content(prometheus_text(metrics), "text/plain; version=0.0.4");
  });
  // The model repository extension (Triton's): the index, and load / unload under
  // --model-control explicit.
  http.Post("/v2/repository/index",
            guarded([this](const httplib::Request& request, httplib::Response& response) {
              const bool only_ready =
                  repository_body(request.body, {"ready"}).value("ready", false);
              json rows = json::array();
              for (const auto& row : models->index()) {
                if (only_ready && row.state != "READY") continue;
                json item{{"name", row.name}, {"version", row.version}, {"state", row.state}};
                if (!row.reason.empty()) item["reason"] = row.reason;
                rows.push_back(std::move(item));
              }
              send_json(response, 200, rows);
            }));
  const std::string repository_model = R"(/v2/repository/models/([^/]+))";
  http.Post(repository_model + "/load",
            guarded([this](const httplib::Request& request, httplib::Response& response) {
              models->load(request.matches[1],
                           parameter_names(repository_body(request.body, {"parameters"})));
              send_json(response, 200, json::object());
            }));
  http.Post(repository_model + "/unload",
            guarded([this](const httplib::Request& request, httplib::Response& response) {
              models->unload(request.matches[1],
                             parameter_names(repository_body(request.body, {"parameters"})));
              send_json(response, 200, json::object());
            }));
  // httplib's own answers (no route, 413 for a body over the limit, 400 for a request it
  // cannot parse) in the protocol's error form.
  http.set_error_handler([](const httplib::Request& request, httplib::Response& response) {
    if (!response.body.empty()) return;
    const std::string message =
        response.status == 404 ? "no such endpoint: " + request.method + " " + request.path
        : response.status == 413
            ? "the request body is larger than --max-request-bytes"
            : "malformed HTTP request (status " + std::to_string(response.status) + ")";
    send_error(response, response.status, message);
  });
  http.set_exception_handler(
      [](const httplib::Request&, httplib::Response& response, std::exception_ptr error) {
        try {
          std::rethrow_exception(error);
        } catch (const std::exception& e) {
          send_error(response, 500, e.what());
        } catch (...) {
          send_error(response, 500, "unknown failure");
        }
      });
  if (options.log_requests) {
    http.set_logger([this](const httplib::Request& request, const httplib::Response& response) {
      log(request.remote_addr + " " + request.method + " " + request.path + " " +
          std::to_string(response.status) + " " + std::to_string(request.body.size()) + "B in " +
          std::to_string(response.body.size()) + "B out");
    });
  }
}

void Server::State::infer(const httplib::Request& request, httplib::Response& response) {
  const auto start = std::chrono::steady_clock::now();
  std::shared_ptr<const Entry> entry;
  try {
    entry = find_ready(request);
    const auto parsed = parse_infer_request(request.body, header_length(request));
    const auto answer = models->infer(*entry, parsed);
    auto encoded = encode_infer_response(entry->source.name, entry->source.version, parsed.id,
                                         answer.tensors, answer.binary);
    if (encoded.json_length) {
      response.set_header("Inference-Header-Content-Length", std::to_string(*encoded.json_length));
      response.set_content(std::move(encoded.body), "application/octet-stream");
    } else {
      response.set_content(std::move(encoded.body), "application/json");
    }
    response.status = 200;
    entry->metrics->request_success += 1;
  } catch (const ProtocolError& e) {
    send_error(response, e.status(), e.what());
  } catch (const Error& e) {  // the model refused the inputs, or failed on them
    send_error(response, 400, e.what());
  } catch (const std::exception& e) {
    send_error(response, 500, e.what());
  }
  if (entry) {
    if (response.status != 200) entry->metrics->request_failure += 1;
    entry->metrics->request_duration_us += microseconds_since(start);
  }
}

}  // namespace tsnative::server

#include "server/server.h"

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
#include "server/batcher.h"
#include "server/metrics.h"
#include "server/protocol.h"
#include "server/repository.h"

namespace tsnative::server {

namespace {

using nlohmann::json;

// How long an idle keep-alive connection stays open, and so the longest a shutdown waits for
// clients that are connected but send nothing.
constexpr time_t kKeepAliveSeconds = 2;

// A model version: found at start, loaded by serve(); `ready` is set once `model` and
// `batcher` are, and read before either is touched.
struct Entry {
  ModelSource source;
  ModelMetrics metrics;
  std::unique_ptr<ServedModel> model;
  std::unique_ptr<Batcher> batcher;
  std::atomic<bool> ready{false};
};

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

}  // namespace

struct Server::State {
  ServerOptions options;
  LogLine log;
  std::vector<std::unique_ptr<Entry>> entries;  // fixed at start: handlers read it unlocked
  httplib::Server http;
  std::atomic<bool> ready{false};
  std::atomic<bool> stopped{false};
  std::atomic<bool> serving{false};        // serve() has started the listener
  std::atomic<bool> listener_done{false};  // ... and it has returned

  // The entry a URL names: the version given, else the newest. Throws ProtocolError 404.
  Entry& find(const std::string& name, const std::string& version) {
    Entry* found = nullptr;
    for (const auto& entry : entries) {
      if (entry->source.name != name) continue;
      if (version.empty() || entry->source.version == version) found = entry.get();
    }
    if (!found) {
      const bool known = std::any_of(entries.begin(), entries.end(),
                                     [&](const auto& entry) { return entry->source.name == name; });
      throw ProtocolError(
          known ? "model " + tsnative::quoted(name) + " has no version " + tsnative::quoted(version)
                : "unknown model " + tsnative::quoted(name),
          404);
    }
    return *found;
  }

  Entry& find_ready(const httplib::Request& request) {
    auto& entry = find(request.matches[1], request.matches[2]);
    if (!entry.ready.load(std::memory_order_acquire)) {
      throw ProtocolError(
          "model " + tsnative::quoted(entry.source.name) + " is not ready (loading)", 503);
    }
    return entry;
  }

  void routes();
  void infer(const httplib::Request& request, httplib::Response& response);
  json model_metadata(const Entry& entry) const;
};

Server::Server(ServerOptions options, LogLine log) : state_(std::make_unique<State>()) {
  state_->options = std::move(options);
  state_->log = std::move(log);
  std::vector<std::string> skipped;
  for (auto& source : find_models(state_->options.path, skipped)) {
    auto entry = std::make_unique<Entry>();
    entry->metrics.model = source.name;
    entry->metrics.version = source.version;
    entry->source = std::move(source);
    state_->entries.push_back(std::move(entry));
  }
  for (const auto& line : skipped) state_->log("skipped: " + line);
  state_->routes();
}

Server::~Server() {
  stop();
  // Batchers finish what they hold before the models they run go.
  for (auto& entry : state_->entries) entry->batcher.reset();
}

int Server::bind() {
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
  return port;
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
    for (auto& entry : state.entries) {
      if (state.stopped) break;
      auto config = state.options.defaults;
      if (!entry->source.config.empty()) config = read_model_config(entry->source.config, config);
      entry->model = std::make_unique<ServedModel>(entry->source.name, entry->source.version,
                                                   entry->source.path, config, state.options.load);
      entry->batcher = std::make_unique<Batcher>(*entry->model, entry->metrics);
      entry->ready.store(true, std::memory_order_release);
    }
    std::string loaded;
    for (const auto& entry : state.entries) {
      if (!entry->ready) continue;
      loaded += (loaded.empty() ? "" : ", ") + entry->source.name + " (version " +
                entry->source.version + ", " + entry->model->platform() +
                (entry->model->batching() ? ", batched" : "") + ")";
    }
    if (!state.stopped) state.log("ready: " + loaded);
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
  if (!state_->serving) return;
  // httplib's stop() before its listen loop has begun would be lost: wait for it to run.
  while (!state_->http.is_running() && !state_->listener_done) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  state_->http.stop();
}

json Server::State::model_metadata(const Entry& entry) const {
  json versions = json::array();
  for (const auto& other : entries) {
    if (other->source.name == entry.source.name) versions.push_back(other->source.version);
  }
  return {{"name", entry.source.name},
          {"versions", versions},
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
    send_json(response, 200,
              {{"name", "tsnative"},
               {"version", TSNATIVE_VERSION},
               {"extensions", {"binary_tensor_data", "classification"}}});
  });
  http.Get(model, guarded([this](const httplib::Request& request, httplib::Response& response) {
             send_json(response, 200, model_metadata(find_ready(request)));
           }));
  http.Get(model + "/ready",
           guarded([this](const httplib::Request& request, httplib::Response& response) {
             const auto& entry = find(request.matches[1], request.matches[2]);
             const bool model_ready = entry.ready.load(std::memory_order_acquire);
             send_json(response, model_ready ? 200 : 503,
                       {{"name", entry.source.name}, {"ready", model_ready}});
           }));
  http.Get(model + "/config",
           guarded([this](const httplib::Request& request, httplib::Response& response) {
             const auto& entry = find_ready(request);
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
    std::vector<const ModelMetrics*> metrics;
    for (const auto& entry : entries) metrics.push_back(&entry->metrics);
    response.set_content(prometheus_text(metrics), "text/plain; version=0.0.4");
  });
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
  Entry* entry = nullptr;
  try {
    entry = &find_ready(request);
    const auto parsed = parse_infer_request(request.body, header_length(request));
    const auto& model = *entry->model;
    auto outputs = entry->batcher->submit(model.arguments(parsed)).get();
    std::vector<bool> binary;
    const auto tensors = model.respond(parsed, outputs, binary);
    auto encoded = encode_infer_response(entry->source.name, entry->source.version, parsed.id,
                                         tensors, binary);
    if (encoded.json_length) {
      response.set_header("Inference-Header-Content-Length", std::to_string(*encoded.json_length));
      response.set_content(std::move(encoded.body), "application/octet-stream");
    } else {
      response.set_content(std::move(encoded.body), "application/json");
    }
    response.status = 200;
    entry->metrics.request_success += 1;
  } catch (const ProtocolError& e) {
    send_error(response, e.status(), e.what());
  } catch (const Error& e) {  // the model refused the inputs, or failed on them
    send_error(response, 400, e.what());
  } catch (const std::exception& e) {
    send_error(response, 500, e.what());
  }
  if (entry) {
    if (response.status != 200) entry->metrics.request_failure += 1;
    entry->metrics.request_duration_us += microseconds_since(start);
  }
}

}  // namespace tsnative::server

#include "train/distributed.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include <torch/torch.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <optional>

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/version.h>
// From PyTorch 2.0 the Gloo and NCCL process groups are c10d::Backend objects (a ProcessGroup
// dispatches to them); the collectives used here have the same signatures on both. Untested
// here: Debian's libtorch is 1.13.
#if TORCH_VERSION_MAJOR >= 2
#include <torch/csrc/distributed/c10d/Backend.hpp>
#define CTFGEN_C10D_GROUP c10d::Backend
#else
#define CTFGEN_C10D_GROUP c10d::ProcessGroup
#endif
#ifdef USE_C10D_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
// NCCL only where libtorch itself was built with it (never on Debian's CPU package). Untested
// here: this project's CI has no CUDA build of libtorch.
#if defined(USE_C10D_NCCL) && __has_include(<torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>)
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#define CTFGEN_HAVE_NCCL 1
#else
#define CTFGEN_HAVE_NCCL 0
#endif

#include "core/error.h"
#include "core/log.h"

namespace ctfgen::train {

struct DistContext::Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<CTFGEN_C10D_GROUP> pg;
  c10::Device device{c10::kCPU};  // where collectives run (CUDA for NCCL)
};

namespace {

std::optional<std::string> env_value(const std::function<const char*(const char*)>& getenv,
                                     const char* name) {
  const char* v = getenv ? getenv(name) : std::getenv(name);
  if (!v || !*v) return std::nullopt;  // unset or empty: absent
  return std::string(v);
}

int64_t parse_env_int(const char* name, const std::string& value, int64_t min, int64_t max,
                      const char* what) {
  int64_t x = 0;
  const char* end = value.data() + value.size();
  auto [ptr, ec] = std::from_chars(value.data(), end, x);
  CTFGEN_CHECK_USAGE(ec == std::errc() && ptr == end && x >= min && x <= max,
                     "distributed: environment variable ", name, "='", value, "' is not ", what);
  return x;
}

double parse_env_seconds(const char* name, const std::string& value) {
  char* end = nullptr;
  double x = std::strtod(value.c_str(), &end);
  CTFGEN_CHECK_USAGE(end && *end == '\0' && std::isfinite(x) && x > 0 && x <= 7 * 24 * 3600.0,
                     "distributed: environment variable ", name, "='", value,
                     "' is not a number of seconds in (0, 604800]");
  return x;
}

// The local address this machine uses to reach `host` (getsockname of a connected UDP socket:
// nothing is sent). "" when it cannot be determined.
std::string local_address_towards(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* res = nullptr;
  if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0 || !res)
    return "";
  std::string out;
  for (addrinfo* ai = res; ai && out.empty(); ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0) continue;
    sockaddr_storage local{};
    socklen_t len = sizeof(local);
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0) {
      char buf[INET6_ADDRSTRLEN] = {0};
      const void* src = local.ss_family == AF_INET
                            ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(&local)->sin_addr)
                            : static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(&local)->sin6_addr);
      if (::inet_ntop(local.ss_family, src, buf, sizeof(buf))) out = buf;
    }
    ::close(fd);
  }
  ::freeaddrinfo(res);
  return out;
}

std::string error_text(const std::exception& e) {
  if (const auto* ce = dynamic_cast<const c10::Error*>(&e)) return ce->what_without_backtrace();
  return e.what();
}

// Consecutive runs of tensors with one dtype, cut at `bucket_bytes` (a larger tensor is a
// bucket of its own).
std::vector<std::vector<at::Tensor>> buckets_of(const std::vector<at::Tensor>& ts,
                                                int64_t bucket_bytes) {
  std::vector<std::vector<at::Tensor>> out;
  int64_t bytes = 0;
  for (const auto& t : ts) {
    int64_t b = t.numel() * static_cast<int64_t>(t.element_size());
    if (out.empty() || out.back().front().scalar_type() != t.scalar_type() ||
        bytes + b > bucket_bytes) {
      out.emplace_back();
      bytes = 0;
    }
    out.back().push_back(t);
    bytes += b;
  }
  return out;
}

// Bool has no Gloo kernel: move it as bytes.
at::Tensor flatten_bucket(const std::vector<at::Tensor>& bucket, c10::Device device) {
  std::vector<at::Tensor> flat;
  flat.reserve(bucket.size());
  for (const auto& t : bucket) flat.push_back(t.reshape({-1}));
  auto cat = torch::cat(flat).to(device);
  return cat.scalar_type() == torch::kBool ? cat.to(torch::kByte) : cat;
}

void unflatten_bucket(const at::Tensor& flat, const std::vector<at::Tensor>& bucket) {
  int64_t offset = 0;
  for (const auto& t : bucket) {
    t.copy_(flat.slice(0, offset, offset + t.numel()).view(t.sizes()));
    offset += t.numel();
  }
}

}  // namespace

void DistConfig::validate() const {
  CTFGEN_CHECK_USAGE(world_size >= 1, "distributed: world_size must be >= 1, got ", world_size);
  CTFGEN_CHECK_USAGE(rank >= 0 && rank < world_size, "distributed: rank ", rank,
                     " is out of range for world_size ", world_size, " (ranks are 0..",
                     world_size - 1, ")");
  CTFGEN_CHECK_USAGE(local_rank >= 0, "distributed: local_rank must be >= 0, got ", local_rank);
  CTFGEN_CHECK_USAGE(world_size == 1 || !master_addr.empty(),
                     "distributed: master_addr must be set when world_size > 1");
  CTFGEN_CHECK_USAGE(master_port >= 1 && master_port <= 65535,
                     "distributed: master_port must be in [1, 65535], got ", master_port);
  CTFGEN_CHECK_USAGE(std::isfinite(timeout_s) && timeout_s > 0,
                     "distributed: timeout_s must be > 0, got ", timeout_s);
  CTFGEN_CHECK_USAGE(bucket_bytes >= 1, "distributed: bucket_bytes must be >= 1, got ",
                     bucket_bytes);
  CTFGEN_CHECK_USAGE(backend == "gloo" || backend == "nccl",
                     "distributed: backend must be 'gloo' or 'nccl', got '", backend, "'");
}

DistConfig dist_config_from_env(const std::function<const char*(const char*)>& getenv) {
  DistConfig c;
  auto rank = env_value(getenv, "RANK"), world = env_value(getenv, "WORLD_SIZE");
  const char *rank_var = "RANK", *world_var = "WORLD_SIZE";
  CTFGEN_CHECK_USAGE(rank.has_value() == world.has_value(), "distributed: ",
                     rank ? "RANK" : "WORLD_SIZE", "='", rank ? *rank : *world, "' is set but ",
                     rank ? "WORLD_SIZE" : "RANK",
                     " is not; set both (torchrun does) or neither (one process)");
  auto local = env_value(getenv, "LOCAL_RANK");
  const char* local_var = "LOCAL_RANK";
  if (!rank) {  // Slurm's srun sets these for every task
    rank = env_value(getenv, "SLURM_PROCID");
    world = env_value(getenv, "SLURM_NTASKS");
    rank_var = "SLURM_PROCID";
    world_var = "SLURM_NTASKS";
    if (rank.has_value() != world.has_value()) rank = world = std::nullopt;
    if (!local) {
      local = env_value(getenv, "SLURM_LOCALID");
      local_var = "SLURM_LOCALID";
    }
  }
  if (world) {
    c.world_size = static_cast<int>(
        parse_env_int(world_var, *world, 1, 1 << 20, "a process count >= 1"));
    c.rank = static_cast<int>(
        parse_env_int(rank_var, *rank, 0, 1 << 20, "a non-negative integer"));
    CTFGEN_CHECK_USAGE(c.rank < c.world_size, "distributed: ", rank_var, "=", c.rank,
                       " is out of range for ", world_var, "=", c.world_size, " (ranks are 0..",
                       c.world_size - 1, ")");
  }
  if (local)
    c.local_rank = static_cast<int>(
        parse_env_int(local_var, *local, 0, 1 << 20, "a non-negative integer"));
  if (auto addr = env_value(getenv, "MASTER_ADDR")) {
    c.master_addr = *addr;
  } else {
    CTFGEN_CHECK_USAGE(c.world_size == 1, "distributed: ", world_var, "=", c.world_size,
                       " but MASTER_ADDR is not set; export the host name or address of rank "
                       "0's machine (127.0.0.1 when every process runs on this one)");
  }
  if (auto port = env_value(getenv, "MASTER_PORT"))
    c.master_port = static_cast<int>(
        parse_env_int("MASTER_PORT", *port, 1, 65535, "a TCP port in [1, 65535]"));
  if (auto t = env_value(getenv, "CTFGEN_DIST_TIMEOUT"))
    c.timeout_s = parse_env_seconds("CTFGEN_DIST_TIMEOUT", *t);
  if (auto mb = env_value(getenv, "CTFGEN_DIST_BUCKET_MB"))
    c.bucket_bytes = parse_env_int("CTFGEN_DIST_BUCKET_MB", *mb, 1, 65536,
                                   "a bucket size in MiB in [1, 65536]") << 20;
  if (auto b = env_value(getenv, "CTFGEN_DIST_BACKEND")) {
    CTFGEN_CHECK_USAGE(*b == "gloo" || *b == "nccl", "distributed: environment variable ",
                       "CTFGEN_DIST_BACKEND='", *b, "' is not 'gloo' or 'nccl'");
    c.backend = *b;
  }
  if (auto ifname = env_value(getenv, "GLOO_SOCKET_IFNAME")) c.socket_ifname = *ifname;
  // torchrun's static rendezvous serves its own TCPStore on MASTER_PORT and tells the workers
  // to join it (torch/distributed/rendezvous.py, _create_c10d_store).
  if (env_value(getenv, "TORCHELASTIC_USE_AGENT_STORE").value_or("") == "True") {
    int64_t attempt = 0;
    if (auto n = env_value(getenv, "TORCHELASTIC_RESTART_COUNT"))
      attempt = parse_env_int("TORCHELASTIC_RESTART_COUNT", *n, 0, int64_t{1} << 30,
                              "a non-negative integer");
    c.store_prefix = str_cat("/worker/attempt_", attempt);
  }
  c.validate();
  return c;
}

DistContext::DistContext() = default;
DistContext::~DistContext() = default;

DistContext::DistContext(const DistConfig& config) : config_(config) {
  config_.validate();
  if (!enabled()) return;
  const auto timeout =
      std::chrono::milliseconds(static_cast<int64_t>(std::llround(config_.timeout_s * 1000.0)));
  const std::string where = str_cat(config_.master_addr, ":", config_.master_port);
  const std::string hint = str_cat(
      "; hint: all ", world_size(), " processes must start within the timeout (",
      "CTFGEN_DIST_TIMEOUT) with the same MASTER_ADDR and MASTER_PORT (a port no other job "
      "uses); under Slurm launch them with srun, not once from the batch script; across "
      "machines set GLOO_SOCKET_IFNAME to the interface they share");
  group_ = std::make_unique<Group>();

  c10d::TCPStoreOptions store_options;
  store_options.port = static_cast<std::uint16_t>(config_.master_port);
  store_options.isServer = is_main() && config_.store_prefix.empty();
  store_options.numWorkers = static_cast<std::size_t>(config_.world_size);
  store_options.waitWorkers = true;
  store_options.timeout = timeout;
  try {
    group_->store = c10::make_intrusive<c10d::TCPStore>(config_.master_addr, store_options);
    if (!config_.store_prefix.empty())
      group_->store = c10::make_intrusive<c10d::PrefixStore>(config_.store_prefix, group_->store);
  } catch (const std::exception& e) {
    throw Error(str_cat(
        "distributed: rank ", rank(), " of ", world_size(),
        store_options.isServer ? " could not serve the rendezvous on "
                               : " could not join the rendezvous at ",
        where, " within ", config_.timeout_s, " s: ", error_text(e), hint));
  }

  std::string transport;
  try {
    if (config_.backend == "nccl") {
#if CTFGEN_HAVE_NCCL
      auto options = c10d::ProcessGroupNCCL::Options::create();
      options->timeout = timeout;
      group_->device = c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(local_rank()));
      group_->pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(group_->store, rank(),
                                                               world_size(), options);
      transport = str_cat("nccl on cuda:", local_rank());
#else
      throw UsageError(
          "distributed: CTFGEN_DIST_BACKEND=nccl, but this libtorch was built without NCCL "
          "(USE_C10D_NCCL); use the default gloo backend");
#endif
    } else {
#ifdef USE_C10D_GLOO
      auto options = c10d::ProcessGroupGloo::Options::create(timeout);
      std::string address;
      if (!config_.socket_ifname.empty()) {
        options->devices.push_back(
            c10d::ProcessGroupGloo::createDeviceForInterface(config_.socket_ifname));
        transport = "gloo/tcp on interface " + config_.socket_ifname;
      } else if (!(address = local_address_towards(config_.master_addr, config_.master_port))
                      .empty()) {
        options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(address));
        transport = "gloo/tcp on " + address;
      } else {
        options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
        transport = "gloo/tcp on the default interface";
      }
      group_->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(group_->store, rank(),
                                                               world_size(), options);
#else
      throw Error("distributed: this libtorch was built without Gloo (USE_C10D_GLOO)");
#endif
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(str_cat("distributed: rank ", rank(), " of ", world_size(), " could not connect to "
                        "the other ranks (", config_.backend, ", rendezvous ", where, ", timeout ",
                        config_.timeout_s, " s): ", error_text(e), hint));
  }
  log::info("data-parallel: rank ", rank(), " of ", world_size(), " (local rank ", local_rank(),
            "), ", transport, ", rendezvous ", where, ", gradient buckets of ",
            static_cast<double>(config_.bucket_bytes) / (1 << 20), " MiB");
}

std::shared_ptr<DistContext> DistContext::from_env() {
  return std::make_shared<DistContext>(dist_config_from_env());
}

namespace {
// Runs one collective and waits; failures name the operation and point at the other ranks.
template <typename F>
void run_collective(const DistContext& dist, const char* what, F&& start) {
  try {
    start()->wait();
  } catch (const std::exception& e) {
    throw Error(str_cat("distributed: ", what, " failed on rank ", dist.rank(), " of ",
                        dist.world_size(), ": ", error_text(e),
                        "; hint: another rank probably stopped or failed (see its error) or "
                        "exceeded the timeout (CTFGEN_DIST_TIMEOUT, ", dist.config().timeout_s,
                        " s)"));
  }
}
}  // namespace

at::Tensor DistContext::shard(const at::Tensor& global) const {
  if (!enabled()) return global;
  CTFGEN_CHECK(global.dim() >= 1 && global.size(0) % world_size() == 0,
               "distributed: a global batch of ", global.dim() >= 1 ? global.size(0) : 0,
               " rows cannot be split evenly over ", world_size(), " ranks");
  const int64_t b = global.size(0) / world_size();
  return global.slice(0, rank() * b, (rank() + 1) * b);
}

void DistContext::broadcast_from_main(const std::vector<at::Tensor>& tensors) {
  if (!enabled()) return;
  torch::NoGradGuard no_grad;
  for (const auto& bucket : buckets_of(tensors, config_.bucket_bytes)) {
    std::vector<at::Tensor> flat{flatten_bucket(bucket, group_->device)};
    c10d::BroadcastOptions options;
    options.rootRank = 0;
    run_collective(*this, "broadcast of the parameters",
                   [&] { return group_->pg->broadcast(flat, options); });
    if (!is_main()) unflatten_bucket(flat[0], bucket);
  }
}

double DistContext::average_gradients(const std::vector<at::Tensor>& params, double local_loss) {
  if (!enabled()) return local_loss;
  torch::NoGradGuard no_grad;
  const int64_t n = static_cast<int64_t>(params.size());
  // One small all-reduce first: the loss and which gradients exist on how many ranks.
  auto header = torch::zeros({n + 1}, torch::kDouble);
  auto h = header.accessor<double, 1>();
  h[0] = local_loss;
  for (int64_t i = 0; i < n; ++i) h[i + 1] = params[i].grad().defined() ? 1.0 : 0.0;
  std::vector<at::Tensor> hv{header.to(group_->device)};
  run_collective(*this, "all-reduce of the loss",
                 [&] { return group_->pg->allreduce(hv, c10d::AllreduceOptions()); });
  header = hv[0].cpu();
  h = header.accessor<double, 1>();

  std::vector<at::Tensor> grads;
  for (int64_t i = 0; i < n; ++i) {
    if (h[i + 1] == 0) continue;
    const auto& p = params[i];
    if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
    grads.push_back(p.grad());
  }
  const double inv = 1.0 / world_size();
  for (const auto& bucket : buckets_of(grads, config_.bucket_bytes)) {
    std::vector<at::Tensor> flat{flatten_bucket(bucket, group_->device)};
    run_collective(*this, "all-reduce of the gradients",
                   [&] { return group_->pg->allreduce(flat, c10d::AllreduceOptions()); });
    flat[0].mul_(inv);
    unflatten_bucket(flat[0], bucket);
  }
  return h[0] * inv;
}

std::vector<double> DistContext::sum(const std::vector<double>& values) {
  if (!enabled() || values.empty()) return values;
  std::vector<at::Tensor> t{torch::tensor(values, torch::kDouble).to(group_->device)};
  run_collective(*this, "all-reduce", [&] { return group_->pg->allreduce(t, c10d::AllreduceOptions()); });
  auto cpu = t[0].cpu();
  return std::vector<double>(cpu.data_ptr<double>(), cpu.data_ptr<double>() + cpu.numel());
}

at::Tensor DistContext::all_gather(const at::Tensor& t) {
  if (!enabled()) return t.unsqueeze(0);
  const bool is_bool = t.scalar_type() == torch::kBool;
  auto in = t.contiguous().to(group_->device);
  if (is_bool) in = in.to(torch::kByte);
  std::vector<at::Tensor> inputs{in};
  std::vector<std::vector<at::Tensor>> outputs(1);
  for (int r = 0; r < world_size(); ++r) outputs[0].push_back(torch::empty_like(in));
  run_collective(*this, "all-gather",
                 [&] { return group_->pg->allgather(outputs, inputs, c10d::AllgatherOptions()); });
  auto out = torch::stack(outputs[0]).to(t.device());
  return is_bool ? out.to(torch::kBool) : out;
}

void DistContext::barrier() {
  if (!enabled()) return;
  run_collective(*this, "barrier", [&] { return group_->pg->barrier(c10d::BarrierOptions()); });
}

}  // namespace ctfgen::train

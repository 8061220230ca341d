// Data-parallel training across processes with libtorch's c10d process groups.
//
// Every process (a "rank") holds a full copy of the model, reads its own slice of each global
// batch, and averages its gradients with the other ranks before the optimiser step, so all ranks
// apply the same update and stay identical. The process group comes from the environment that
// torchrun and Slurm set up:
//
//   RANK, WORLD_SIZE, LOCAL_RANK      (torchrun; fall back to SLURM_PROCID, SLURM_NTASKS,
//                                      SLURM_LOCALID when RANK and WORLD_SIZE are both absent)
//   MASTER_ADDR, MASTER_PORT          address of rank 0, which serves the rendezvous (TCPStore)
//   CTFGEN_DIST_TIMEOUT               seconds before a rendezvous or collective gives up (300)
//   CTFGEN_DIST_BUCKET_MB             gradient bucket size in MiB (25)
//   CTFGEN_DIST_BACKEND               "gloo" (default; CPU tensors) or "nccl" (CUDA builds only)
//   GLOO_SOCKET_IFNAME                network interface for Gloo (default: the one that routes
//                                      to MASTER_ADDR, loopback for 127.0.0.1)
//   TORCHELASTIC_USE_AGENT_STORE=True torchrun's agent already serves the store on MASTER_PORT:
//                                      every rank connects as a client, under the key prefix
//                                      /worker/attempt_<TORCHELASTIC_RESTART_COUNT> (as PyTorch)
//
// World size 1 (or no variables at all) means no process group: every operation below returns
// at once, so single-process training pays nothing.
//
// Backends: Gloo over TCP is always compiled (Debian's libtorch_cpu ships it). NCCL is compiled
// only where libtorch was built with it (USE_C10D_NCCL defined and ProcessGroupNCCL.hpp present);
// Debian's CPU package has neither, so there CTFGEN_DIST_BACKEND=nccl is refused with a message.
//
// Collectives must be called by every rank in the same order with tensors of the same shapes
// (c10d's rule); all methods here are collectives unless noted. Not thread-safe.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace ctfgen::train {

struct DistConfig {
  int rank = 0;                 // this process, in [0, world_size)
  int world_size = 1;           // number of processes; 1 = no process group
  int local_rank = 0;           // rank among the processes on this machine
  std::string master_addr = "127.0.0.1";  // host or address of rank 0 (rendezvous server)
  int master_port = 29500;      // TCP port of the rendezvous server on rank 0
  double timeout_s = 300.0;     // rendezvous and collective timeout, seconds
  int64_t bucket_bytes = int64_t{25} << 20;  // gradient all-reduce bucket size, bytes
  std::string backend = "gloo"; // "gloo" or "nccl"
  std::string socket_ifname;    // Gloo network interface; "" = the one routing to master_addr
  std::string store_prefix;     // "" = rank 0 serves the store; else all ranks are clients of
                                // an existing store (torchrun's agent) under this key prefix

  /// Throws UsageError naming the field and value.
  void validate() const;
};

/// Reads the variables listed at the top of this file through `getenv` (for tests; default: the
/// process environment). Throws UsageError naming the variable and its value when a value is
/// not a valid integer or out of range, when only one of RANK and WORLD_SIZE is set, or when
/// RANK >= WORLD_SIZE.
DistConfig dist_config_from_env(
    const std::function<const char*(const char*)>& getenv = nullptr);

/// Rank, world size and (for world size > 1) the process group of one training process.
class DistContext {
 public:
  /// A single process: rank 0 of 1, no process group.
  DistContext();
  /// Validates `config` and, for world_size > 1, joins the process group: rank 0 starts a
  /// TCPStore server on master_addr:master_port, the others connect to it, then every rank
  /// creates the Gloo (or NCCL) group. Blocks until all world_size processes have arrived;
  /// throws Error naming the address and the timeout when they do not within timeout_s.
  explicit DistContext(const DistConfig& config);
  ~DistContext();
  DistContext(const DistContext&) = delete;
  DistContext& operator=(const DistContext&) = delete;

  /// dist_config_from_env() then the constructor.
  static std::shared_ptr<DistContext> from_env();

  int rank() const { return config_.rank; }
  int world_size() const { return config_.world_size; }
  int local_rank() const { return config_.local_rank; }
  /// True when there is a process group (world size > 1). Not a collective.
  bool enabled() const { return config_.world_size > 1; }
  /// Rank 0: the one that writes checkpoints, outputs and logs. Not a collective.
  bool is_main() const { return config_.rank == 0; }
  const DistConfig& config() const { return config_; }

  /// Rows [rank·b, (rank+1)·b) of a global batch `global` [world·b, ...] -> [b, ...]; the whole
  /// tensor for a single process. Throws when dim 0 is not a multiple of the world size. Not a
  /// collective.
  at::Tensor shard(const at::Tensor& global) const;

  /// Overwrites `tensors` (any dtypes, shapes and memory layouts; the same list on every rank)
  /// with rank 0's values, concatenated into buckets of config().bucket_bytes per dtype.
  void broadcast_from_main(const std::vector<at::Tensor>& tensors);

  /// Replaces the gradient of every tensor in `params` by its mean over the ranks, in flat
  /// buckets of config().bucket_bytes. A parameter whose gradient is undefined on every rank is
  /// left alone; one whose gradient is undefined on some ranks only counts zeros there. Returns
  /// the mean of `local_loss` over the ranks: NaN or infinite when it is on any rank, so that
  /// every rank takes the same skip decision. Single process: returns local_loss.
  double average_gradients(const std::vector<at::Tensor>& params, double local_loss);

  /// Element-wise sum of `values` over the ranks (same length on every rank).
  std::vector<double> sum(const std::vector<double>& values);

  /// All ranks' copies of `t` (same shape and dtype on every rank): [world, *t.shape].
  at::Tensor all_gather(const at::Tensor& t);

  void barrier();

 private:
  struct Group;
  DistConfig config_;
  std::unique_ptr<Group> group_;
};

}  // namespace ctfgen::train

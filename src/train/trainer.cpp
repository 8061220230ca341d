#include "train/trainer.h"

#include <signal.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <exception>
#include <fstream>
#include <set>
#include <sstream>

#include "core/error.h"
#include "core/fs.h"
#include "core/json_config.h"
#include "core/log.h"
#include "core/rng.h"
#include "io/checkpoint.h"

namespace ctfgen::train {
namespace {
volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

// Seed of libtorch's global generator (dropout) on `rank`: the trainer seed itself on rank 0, so
// a single process behaves as before; splitmix64-mixed for the others so that ranks draw
// independent dropout masks.
uint64_t global_seed_for_rank(uint64_t seed, int rank) {
  if (rank == 0) return seed;
  uint64_t z = seed + 0x9E3779B97F4A7C15ULL * static_cast<uint64_t>(rank);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

std::string rank_rng_name(int rank) {
  return rank == 0 ? std::string("rng.global") : str_cat("rng.global.rank", rank);
}
}  // namespace

bool stop_requested() { return g_stop != 0; }

void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESTART;  // the handler only sets a flag; let interrupted system calls resume
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

nlohmann::json TrainerConfig::to_json() const { return fields_to_json(*this); }

TrainerConfig TrainerConfig::from_json(const nlohmann::json& j) {
  auto c = fields_from_json<TrainerConfig>(j, "trainer config");
  c.validate();
  return c;
}

void TrainerConfig::validate() const {
  CTFGEN_CHECK_USAGE(steps >= 1, "trainer: steps must be >= 1, got ", steps);
  CTFGEN_CHECK_USAGE(checkpoint_every >= 0, "trainer: checkpoint_every must be >= 0, got ",
                     checkpoint_every);
  CTFGEN_CHECK_USAGE(log_every >= 1, "trainer: log_every must be >= 1, got ", log_every);
  CTFGEN_CHECK_USAGE(max_nonfinite_in_a_row >= 1,
                     "trainer: max_nonfinite_in_a_row must be >= 1, got ", max_nonfinite_in_a_row);
}

at::Tensor DataCursor::next_batch(int64_t batch, int64_t n) {
  CTFGEN_CHECK(batch >= 1 && batch <= n, "data: batch size ", batch,
               " must be between 1 and the dataset size ", n);
  if (position_ + batch > n) {  // drop the incomplete tail; next epoch
    ++epoch_;
    position_ = 0;
    cached_n_ = -1;
  }
  if (cached_n_ != n || !perm_.defined()) {
    perm_ = epoch_permutation(n, seed_, epoch_);
    cached_n_ = n;
  }
  auto idx = perm_.slice(0, position_, position_ + batch);
  position_ += batch;
  return idx;
}

Trainer::Trainer(TrainerConfig config, std::string run_dir, std::string kind,
                 nlohmann::json model_config, DistContext* dist)
    : config_(std::move(config)), run_dir_(std::move(run_dir)), kind_(std::move(kind)),
      model_config_(std::move(model_config)), gen_(make_generator(config_.seed)),
      dist_(dist ? dist : &single_) {
  config_.validate();
  if (dist_->is_main()) fs::ensure_dir(run_dir_);
  seed_global(global_seed_for_rank(config_.seed, dist_->rank()));
  cursor_.set(config_.seed, 0, 0);
  install_stop_handlers();
}

void Trainer::add_module(const std::string& name, torch::nn::Module& module) {
  modules_.emplace_back(name, &module);
}

void Trainer::add_optimizer(const std::string& name, AdamW& opt) {
  optimizers_.emplace_back(name, &opt);
}

bool Trainer::done() const { return stopped_ || step_ >= config_.steps; }

at::Tensor Trainer::next_batch(int64_t batch, int64_t n) {
  const int64_t world = dist_->world_size();
  CTFGEN_CHECK(world == 1 || (batch >= 1 && batch * world <= n), "data: the global batch of ",
               world, " ranks x ", batch, " = ", batch * world,
               " items is larger than the dataset (", n, " items); lower --batch");
  return dist_->shard(cursor_.next_batch(batch * world, n));
}

bool Trainer::resume_if_present() {
  std::string path = checkpoint_path();
  const bool here = fs::exists(path);
  if (dist_->enabled()) {
    const int seen = static_cast<int>(dist_->sum({here ? 1.0 : 0.0})[0]);
    CTFGEN_CHECK(seen == 0 || seen == dist_->world_size(), path, ": the checkpoint is visible to ",
                 seen, " of ", dist_->world_size(), " ranks (rank ", dist_->rank(),
                 here ? " sees it" : " does not",
                 "); every rank must read the same run directory (a shared filesystem) to resume");
  }
  if (here) load_checkpoint(path);
  // Every rank starts from rank 0's parameters and buffers, checkpoint or not.
  if (dist_->enabled()) {
    std::vector<at::Tensor> state;
    for (auto& [name, m] : modules_) {
      for (const auto& p : m->parameters()) state.push_back(p);
      for (const auto& b : m->buffers()) state.push_back(b);
    }
    dist_->broadcast_from_main(state);
  }
  started_ = true;
  return here;
}

namespace {

// "field: was X, now Y" for the first path where two JSON values differ (objects key by key).
std::string first_json_difference(const nlohmann::json& was, const nlohmann::json& now,
                                  const std::string& at) {
  if (was.is_object() && now.is_object()) {
    std::set<std::string> keys;
    for (auto it = was.begin(); it != was.end(); ++it) keys.insert(it.key());
    for (auto it = now.begin(); it != now.end(); ++it) keys.insert(it.key());
    for (const auto& k : keys) {
      const auto a = was.value(k, nlohmann::json()), b = now.value(k, nlohmann::json());
      if (a != b) return first_json_difference(a, b, at.empty() ? k : at + "." + k);
    }
  }
  return str_cat(at.empty() ? "the configuration" : at, " was ", was.is_null() ? "absent" : was.dump(),
                 ", now ", now.is_null() ? "absent" : now.dump());
}

}  // namespace

void Trainer::load_checkpoint(const std::string& path) {
  auto c = io::load_component(path, "train-" + kind_);
  const int64_t saved_world = c.meta.value("world_size", int64_t{1});
  CTFGEN_CHECK(saved_world == dist_->world_size(), path, ": the checkpoint was written by a run of ",
               saved_world, " process(es), this run has ", dist_->world_size(),
               "; resume with the same world size (the global batch, the data order and the "
               "per-rank generator states depend on it) or use a new run directory");
  const auto saved = c.config.value("model", nlohmann::json());
  if (saved != model_config_) {
    const auto d = first_json_difference(saved, model_config_, "");
    throw Error(str_cat(path, ": the checkpoint was made with other settings: ", d,
                        "; resume with the same settings or use a new run directory"));
  }
  const auto trainer_saved = c.config.value("trainer", nlohmann::json::object());
  if (trainer_saved.contains("seed"))
    CTFGEN_CHECK(trainer_saved["seed"].get<uint64_t>() == config_.seed, path,
                 ": the checkpoint was made with seed ", trainer_saved["seed"].dump(), ", this run has ",
                 config_.seed, " (the data order and the random draws follow it); resume with --seed ",
                 trainer_saved["seed"].dump(), " or use a new run directory");
  if (trainer_saved.contains("steps")) {
    const int64_t was = trainer_saved["steps"].get<int64_t>();
    CTFGEN_CHECK(was == config_.steps || config_.allow_steps_change, path,
                 ": the checkpoint belongs to a run of ", was, " steps, this one asks for ",
                 config_.steps, "; the learning-rate schedule depends on the total, so pass "
                 "--allow-steps-change to continue with the new length (a cosine schedule then "
                 "jumps to the new curve at the resumed step), or use a new run directory");
    if (was != config_.steps)
      log::warn("resuming a ", was, "-step run as a ", config_.steps,
                "-step run (--allow-steps-change): the learning-rate schedule follows the new total");
  }
  for (auto& [name, m] : modules_) io::load_module_strict(*m, c.file, name + ".");
  for (auto& [name, o] : optimizers_) o->load_state(c.file, name + ".");
  RngState rs{c.file.get("rng.generator"), c.file.get(rank_rng_name(dist_->rank()))};
  restore_rng(gen_, rs);
  step_ = c.meta.at("step").get<int64_t>();
  cursor_.set(config_.seed, c.meta.at("epoch").get<int64_t>(), c.meta.at("position").get<int64_t>());
  nonfinite_total_ = c.meta.value("nonfinite_total", int64_t{0});
  if (c.meta.contains("extra")) extra_ = c.meta["extra"];
  // Drop log lines from steps after the checkpoint: they will be redone.
  std::string log_path = run_dir_ + "/log.jsonl";
  if (dist_->is_main() && fs::exists(log_path)) {
    std::ifstream in(log_path);
    std::string line, kept;
    while (std::getline(in, line)) {
      try {
        if (nlohmann::json::parse(line).value("step", int64_t{0}) <= step_) kept += line + "\n";
      } catch (const std::exception&) {
        break;  // a torn last line from a crash
      }
    }
    fs::atomic_write_text(log_path, kept);
  }
  log::info("resumed ", path, " at step ", step_, " (epoch ", cursor_.epoch(), ")");
}

void Trainer::save_checkpoint() {
  auto rs = capture_rng(gen_);
  // Every rank's dropout generator state [world, S]; gen_ is the same everywhere.
  at::Tensor globals = dist_->all_gather(rs.global);
  std::exception_ptr failure;
  if (dist_->is_main()) {
    try {
      write_checkpoint(rs.generator, globals);
    } catch (...) {
      if (!dist_->enabled()) throw;
      failure = std::current_exception();
    }
  }
  if (!dist_->enabled()) return;
  // Doubles as the barrier after the write: no rank moves on before the checkpoint is complete.
  const double failed = dist_->sum({failure ? 1.0 : 0.0})[0];
  if (failure) std::rethrow_exception(failure);
  CTFGEN_CHECK(failed == 0, "rank 0 could not write the checkpoint ", checkpoint_path(),
               " (see its error); stopping");
}

void Trainer::write_checkpoint(const at::Tensor& generator_state, const at::Tensor& global_states) {
  io::NamedTensors tensors;
  for (auto& [name, m] : modules_) {
    auto t = io::module_tensors(*m, name + ".");
    tensors.insert(tensors.end(), t.begin(), t.end());
  }
  for (auto& [name, o] : optimizers_) {
    auto t = o->state(name + ".");
    tensors.insert(tensors.end(), t.begin(), t.end());
  }
  tensors.emplace_back("rng.generator", generator_state);
  for (int r = 0; r < dist_->world_size(); ++r)
    tensors.emplace_back(rank_rng_name(r), global_states[r]);
  nlohmann::json config = {{"model", model_config_}, {"trainer", config_.to_json()}};
  nlohmann::json meta = {{"step", step_},
                         {"epoch", cursor_.epoch()},
                         {"position", cursor_.position()},
                         {"nonfinite_total", nonfinite_total_},
                         {"world_size", dist_->world_size()},
                         {"extra", extra_}};
  io::save_component(checkpoint_path(), "train-" + kind_, config, tensors, meta);
  log::debug("checkpoint written: ", checkpoint_path(), " (step ", step_, ")");
}

double Trainer::current_lr(const AdamW& opt) const {
  return lr_at(opt.config(), step_, config_.steps);
}

bool Trainer::step_optimizer(AdamW& opt, double loss_value) {
  if (dist_->enabled()) {
    CTFGEN_CHECK(started_, "trainer: call resume_if_present() before the first step of a "
                 "data-parallel run (it synchronises the ranks' parameters)");
    // After this the gradients, the loss and hence every decision below agree on all ranks.
    loss_value = dist_->average_gradients(opt.parameters(), loss_value);
  }
  double norm = opt.grad_norm();
  if (!std::isfinite(loss_value) || !std::isfinite(norm)) {
    ++nonfinite_run_;
    ++nonfinite_total_;
    opt.zero_grad();
    if (dist_->is_main())
      log::warn("step ", step_, ": non-finite ", std::isfinite(loss_value) ? "gradient" : "loss",
                " (loss ", loss_value, ", grad norm ", norm, "); update skipped (",
                nonfinite_run_, " in a row)");
    CTFGEN_CHECK(nonfinite_run_ < config_.max_nonfinite_in_a_row, "training stopped at step ",
                 step_, ": ", nonfinite_run_,
                 " non-finite losses or gradients in a row; the last good checkpoint is ",
                 fs::exists(checkpoint_path()) ? checkpoint_path() : std::string("(none yet)"),
                 "; hint: lower the learning rate");
    return false;
  }
  nonfinite_run_ = 0;
  opt.step(current_lr(opt), norm);
  return true;
}

std::map<std::string, double> Trainer::end_step(const std::map<std::string, double>& local_scalars,
                                                 bool always_log) {
  ++step_;
  std::map<std::string, double> scalars = local_scalars;
  bool stop = stop_requested();
  if (dist_->enabled()) {
    // Buffers (BatchNorm running statistics) follow rank 0, as PyTorch DDP's broadcast_buffers.
    std::vector<at::Tensor> buffers;
    for (auto& [name, m] : modules_)
      for (const auto& b : m->buffers()) buffers.push_back(b);
    if (!buffers.empty()) dist_->broadcast_from_main(buffers);
  }
  if (dist_->enabled()) {  // one all-reduce: the stop flag and the scalars' sums
    std::vector<double> v{stop ? 1.0 : 0.0};
    for (const auto& [k, x] : scalars) v.push_back(x);
    v = dist_->sum(v);
    stop = v[0] > 0;
    size_t i = 1;
    for (auto& [k, x] : scalars) x = v[i++] / dist_->world_size();
  }
  if (dist_->is_main()) {
    if (!progress_) {  // after a resume it counts from the checkpoint's step
      progress_ = std::make_unique<Progress>("train " + kind_, config_.steps, "step");
      progress_->start_at(step_ - 1);
    }
    std::ostringstream status;
    for (const auto& [k, v] : scalars) status << k << " " << v << " ";
    progress_->advance(1, status.str());
    if (step_ % config_.log_every == 0 || step_ == config_.steps || always_log) {
      nlohmann::json line = {{"step", step_}};
      for (const auto& [k, v] : scalars) line[k] = v;
      std::ofstream out(run_dir_ + "/log.jsonl", std::ios::app);
      out << line.dump() << "\n";
    }
  }
  bool periodic = config_.checkpoint_every > 0 && step_ % config_.checkpoint_every == 0;
  if (stop) {
    save_checkpoint();
    stopped_ = true;
    if (dist_->is_main())
      log::warn("stop requested: checkpoint written at step ", step_, " to ", checkpoint_path());
  } else if (periodic && step_ < config_.steps) {
    save_checkpoint();
  }
  return scalars;
}

void Trainer::finish() {
  if (progress_) progress_->finish();
  if (stopped_)
    throw Interrupted(str_cat("training stopped at step ", step_, "; rerun the same command to resume from ",
                              checkpoint_path()));
  save_checkpoint();
  if (nonfinite_total_ > 0 && dist_->is_main()) log::warn(nonfinite_total_, " steps were skipped for non-finite values");
}

}  // namespace ctfgen::train

#include "eval/classifier.h"

#include <torch/torch.h>

#include <chrono>

#include "core/device.h"
#include "core/error.h"
#include "core/json_config.h"
#include "core/log.h"
#include "core/shape.h"
#include "core/timer.h"
#include "data/dataset.h"
#include "io/checkpoint.h"
#include "io/tensor_hash.h"

namespace ctfgen::eval {

nlohmann::json ClassifierConfig::to_json() const { return fields_to_json(*this); }

ClassifierConfig ClassifierConfig::from_json(const nlohmann::json& j) {
  auto c = fields_from_json<ClassifierConfig>(j, "classifier config");
  c.validate();
  return c;
}

void ClassifierConfig::validate() const {
  CTFGEN_CHECK_USAGE(in_channels == 1 || in_channels == 3,
                     "classifier config: in_channels must be 1 or 3, got ", in_channels);
  CTFGEN_CHECK_USAGE(image_size >= 8 && image_size <= 256,
                     "classifier config: image_size must be in [8, 256], got ", image_size);
  CTFGEN_CHECK_USAGE(num_classes >= 2 && num_classes <= 100000,
                     "classifier config: num_classes must be in [2, 100000], got ", num_classes);
  CTFGEN_CHECK_USAGE(width >= 1 && width <= 1024,
                     "classifier config: width must be in [1, 1024], got ", width);
  CTFGEN_CHECK_USAGE(embed_dim >= 0 && embed_dim <= 8192,
                     "classifier config: embed_dim must be in [0, 8192] (0 = off), got ", embed_dim);
}

ClassifierImpl::ClassifierImpl(ClassifierConfig config_) : config(std::move(config_)) {
  config.validate();
  int64_t in = config.in_channels;
  const int64_t widths[] = {config.width, 2 * config.width, 4 * config.width, 4 * config.width};
  int idx = 0;
  for (int64_t s = 0; s < config.num_stages(); ++s) {
    for (int k = 0; k < 2; ++k, ++idx) {
      const int64_t out = widths[s];
      convs.push_back(register_module(
          "conv" + std::to_string(idx),
          torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).padding(1).bias(false))));
      bns.push_back(register_module("bn" + std::to_string(idx), torch::nn::BatchNorm2d(out)));
      in = out;
    }
  }
  if (config.embed_dim > 0) {
    embed = register_module(
        "embed", torch::nn::Conv2d(torch::nn::Conv2dOptions(in, config.embed_dim, 1).bias(false)));
    embed_bn = register_module("embed_bn", torch::nn::BatchNorm2d(config.embed_dim));
  }
  fc = register_module("fc", torch::nn::Linear(config.feature_dim(), config.num_classes));
}

at::Tensor ClassifierImpl::features(const at::Tensor& input) {
  CTFGEN_CHECK_SHAPE(input, {-1, config.in_channels, config.image_size, config.image_size},
                     "Classifier input");
  auto x = input;
  for (size_t i = 0; i < convs.size(); ++i) {
    x = torch::relu(bns[i]->forward(convs[i]->forward(x)));
    const bool stage_end = i % 2 == 1;
    if (stage_end && i + 1 < convs.size()) x = at::max_pool2d(x, {2, 2}, {2, 2});
  }
  if (embed) x = torch::relu(embed_bn->forward(embed->forward(x)));
  return x.mean({2, 3});
}

at::Tensor ClassifierImpl::head(const at::Tensor& feats) {
  CTFGEN_CHECK_SHAPE(feats, {-1, config.feature_dim()}, "Classifier features");
  return fc->forward(feats);
}

at::Tensor ClassifierImpl::forward(const at::Tensor& x) { return head(features(x)); }

void save_classifier(const std::string& path, Classifier& model, const nlohmann::json& meta) {
  io::save_component(path, "classifier", model->config.to_json(), io::module_tensors(*model),
                     meta);
}

Classifier load_classifier(const std::string& path) {
  auto comp = io::load_component(path, "classifier");
  Classifier model(ClassifierConfig::from_json(comp.config));
  io::load_module_strict(*model, comp.file);
  model->eval();
  model->to(default_device());
  return model;
}

double classifier_accuracy(Classifier& model, const at::Tensor& x, const at::Tensor& y,
                           int64_t batch) {
  CTFGEN_CHECK(x.dim() == 4 && y.dim() == 1 && x.size(0) == y.size(0) && x.size(0) > 0,
               "classifier_accuracy: expected x [N, C, S, S] and y [N], got ", shape_str(x.sizes()),
               " and ", shape_str(y.sizes()));
  CTFGEN_CHECK_USAGE(batch >= 1, "classifier_accuracy: batch must be >= 1, got ", batch);
  torch::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();
  int64_t correct = 0;
  const c10::Device device = module_device(*model);
  for (int64_t i = 0; i < x.size(0); i += batch) {
    const int64_t j = std::min(x.size(0), i + batch);
    auto pred = model->forward(x.slice(0, i, j).to(device, torch::kFloat)).argmax(1);
    correct += pred.eq(y.slice(0, i, j).to(device, torch::kLong)).sum().item<int64_t>();
  }
  model->train(was_training);
  return static_cast<double>(correct) / static_cast<double>(x.size(0));
}

ClassifierNet::ClassifierNet(Classifier model) : model_(std::move(model)) {
  model_->eval();
  identity_ = network_identity("classifier", model_->config.to_json().dump(),
                               io::hash_tensors(io::module_tensors(*model_)));
}

FeatureOutput ClassifierNet::run(const at::Tensor& images) {
  const auto& c = model_->config;
  CTFGEN_CHECK(images.dim() == 4 && images.size(1) == c.in_channels, "ClassifierNet: expected images [B, ",
               c.in_channels, ", H, W], got ", shape_str(images.sizes()));
  torch::NoGradGuard no_grad;
  model_->eval();
  auto x = images.to(module_device(*model_), torch::kFloat);
  if (x.size(2) != c.image_size || x.size(3) != c.image_size)
    x = at::upsample_bilinear2d(x, {c.image_size, c.image_size}, /*align_corners=*/false);
  FeatureOutput out;
  out.features = model_->features(x.contiguous());
  out.probs = torch::softmax(model_->head(out.features), 1);
  return out;
}

train::OptimConfig ClassifierTrainConfig::default_optim() {
  train::OptimConfig o;
  o.lr = 2e-3;
  o.beta2 = 0.999;
  o.weight_decay = 1e-4;
  o.grad_clip = 0.0;
  o.warmup_steps = 20;
  o.schedule = "cosine";
  o.min_lr_ratio = 0.02;
  return o;
}

nlohmann::json ClassifierTrainConfig::to_json() const { return fields_to_json(*this); }

ClassifierTrainConfig ClassifierTrainConfig::from_json(const nlohmann::json& j) {
  auto c = fields_from_json<ClassifierTrainConfig>(j, "classifier training config");
  c.validate();
  return c;
}

void ClassifierTrainConfig::validate() const {
  CTFGEN_CHECK_USAGE(batch >= 1 && batch <= 65536,
                     "classifier training: batch must be in [1, 65536], got ", batch);
  CTFGEN_CHECK_USAGE(shift >= 0 && shift <= 16,
                     "classifier training: shift must be in [0, 16], got ", shift);
  CTFGEN_CHECK_USAGE(eval_batch >= 1 && eval_batch <= 65536,
                     "classifier training: eval_batch must be in [1, 65536], got ", eval_batch);
  trainer.validate();
  optim.validate();
}

namespace {

// Each image translated by (dy, dx) drawn uniformly from [-s, s]^2, edge pixels repeated: the
// usual padded random crop. Draws are made for the global batch, then sharded.
at::Tensor random_shift(const at::Tensor& x, int64_t s, train::Trainer& trainer) {
  const int64_t b = x.size(0), H = x.size(2), W = x.size(3);
  auto draws = trainer.shard(torch::randint(0, 2 * s + 1, {trainer.dist().world_size() * b, 2},
                                            trainer.generator(), torch::kLong));
  auto padded = at::replication_pad2d(x, {s, s, s, s});
  auto out = torch::empty_like(x);
  auto d = draws.accessor<int64_t, 2>();
  for (int64_t i = 0; i < b; ++i)
    out[i].copy_(padded[i].narrow(1, d[i][0], H).narrow(2, d[i][1], W));
  return out;
}

}  // namespace

ClassifierTrainResult train_classifier(Classifier& model, const at::Tensor& train_x,
                                       const at::Tensor& train_y, const at::Tensor& test_x,
                                       const at::Tensor& test_y,
                                       const ClassifierTrainConfig& config,
                                       const std::string& run_dir, train::DistContext* dist) {
  config.validate();
  const auto& mc = model->config;
  const int64_t n = train_x.size(0);
  CTFGEN_CHECK_SHAPE(train_x, {-1, mc.in_channels, mc.image_size, mc.image_size},
                     "train_classifier train_x");
  CTFGEN_CHECK_SHAPE(train_y, {n}, "train_classifier train_y");
  CTFGEN_CHECK_SHAPE(test_x, {-1, mc.in_channels, mc.image_size, mc.image_size},
                     "train_classifier test_x");
  CTFGEN_CHECK_SHAPE(test_y, {test_x.size(0)}, "train_classifier test_y");
  CTFGEN_CHECK(n >= 1 && test_x.size(0) >= 1, "train_classifier: empty train or test set");
  for (const auto* y : {&train_y, &test_y}) {
    const auto [lo, hi] = int_range(*y);
    CTFGEN_CHECK(lo >= 0 && hi < mc.num_classes, "train_classifier: labels must lie in [0, ",
                 mc.num_classes, ")");
  }

  const auto t0 = std::chrono::steady_clock::now();
  // What must agree for a resume (steps may grow; logging/checkpoint cadence may change).
  nlohmann::json model_json = {{"classifier", mc.to_json()},
                               {"batch", config.batch},
                               {"hflip", config.hflip},
                               {"shift", config.shift},
                               {"optim", config.optim.to_json()}};
  train::Trainer trainer(config.trainer, run_dir, "classifier", model_json, dist);
  std::vector<std::pair<std::string, at::Tensor>> params;
  for (auto& p : model->named_parameters(true)) params.emplace_back(p.key(), p.value());
  train::AdamW opt(params, config.optim);
  trainer.add_module("model", *model);
  trainer.add_optimizer("optim", opt);
  ClassifierTrainResult result;
  result.resumed = trainer.resume_if_present();
  model->train();
  const c10::Device device = module_device(*model);  // batches go where the model is
  auto labels = train_y.to(torch::kLong);
  double window_loss = 0;
  int64_t window_n = 0;
  const int64_t world = trainer.dist().world_size();
  const int64_t batch = std::min(config.batch, n / world);  // per rank
  CTFGEN_CHECK(batch >= 1, "train_classifier: ", n, " images cannot feed ", world, " processes");
  while (!trainer.done()) {
    auto idx = trainer.next_batch(batch, n);
    auto x = train_x.index_select(0, idx).to(device, torch::kFloat);
    auto y = labels.index_select(0, idx).to(device);
    if (config.hflip) {  // data::random_hflip's draws, made for the global batch then sharded
      auto draw = torch::rand({world * batch}, trainer.generator(),
                              torch::TensorOptions().dtype(torch::kFloat));
      auto flip = trainer.shard(draw < 0.5).to(device);
      x = torch::where(flip.view({-1, 1, 1, 1}), x.flip({3}), x);
    }
    if (config.shift > 0) x = random_shift(x, config.shift, trainer);
    opt.zero_grad();
    auto logits = model->forward(x);
    auto loss = torch::nn::functional::cross_entropy(logits, y);
    loss.backward();
    trainer.step_optimizer(opt, loss.item<double>());
    const double acc = logits.argmax(1).eq(y).to(torch::kDouble).mean().item<double>();
    const double lv =  // mean over the ranks
        trainer.end_step({{"loss", loss.item<double>()}, {"batch_acc", acc}}).at("loss");
    if (std::isfinite(lv)) {
      window_loss += lv;
      ++window_n;
    }
    if (window_n >= 50) {
      result.train_loss = window_loss / static_cast<double>(window_n);
      window_loss = 0;
      window_n = 0;
    }
  }
  if (window_n > 0) result.train_loss = window_loss / static_cast<double>(window_n);
  trainer.finish();
  result.steps = trainer.step();
  model->eval();
  result.test_accuracy = classifier_accuracy(model, test_x, test_y, config.eval_batch);
  result.seconds = seconds_since(t0);
  log::info("classifier: ", result.steps, " steps, test accuracy ", result.test_accuracy * 100.0,
            " %, ", result.seconds, " s");
  return result;
}

}  // namespace ctfgen::eval

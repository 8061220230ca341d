// `ctfgen train-classifier`: trains the small CNN used as the feature network for FID, IS and
// precision/recall on our datasets, reports test accuracy, writes a "classifier" component.
#include <cstdio>
#include <memory>

#include "command.h"
#include "core/device.h"
#include "core/error.h"
#include "core/log.h"
#include "core/rng.h"
#include "data/dataset.h"
#include "eval/classifier.h"
#include "train_flags.h"

namespace ctfgen::cmd_train_classifier {

struct TrainClassifierOptions {
  ctfgen::data::DatasetConfig data;
  ctfgen::eval::ClassifierConfig model;
  ctfgen::eval::ClassifierTrainConfig train;
  int64_t test_limit = 0;
  std::string out;
  std::string run_dir;
  bool json = false;
};

ctfgen::cli::Action setup_train_classifier(CLI::App& app) {
  auto o = std::make_shared<TrainClassifierOptions>();
  o->train.trainer.steps = 2000;
  o->train.trainer.checkpoint_every = 500;
  o->train.trainer.log_every = 100;
  app.add_option("--dataset", o->data.name, "fashion-mnist | emoji | imagefolder")
      ->capture_default_str();
  app.add_option("--data-path", o->data.path, "Dataset location (default: the dataset's own)");
  app.add_option("--alpha-background", o->data.alpha_background,
                 "Transparent pixels are composited onto: white, black or R,G,B")
      ->capture_default_str();
  app.add_flag("--skip-bad", o->data.skip_bad,
               "Skip unreadable or corrupt images (their count is reported) instead of failing");
  app.add_option("--image-size", o->data.image_size,
                 "Image size (0 = native; fashion-mnist pads to sizes > 28)")
      ->check(CLI::Range(0, 256))
      ->capture_default_str();
  app.add_option("--limit", o->data.limit, "Use at most this many training images (0 = all)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40))
      ->capture_default_str();
  app.add_option("--test-limit", o->test_limit, "Use at most this many test images (0 = all)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40))
      ->capture_default_str();
  app.add_option("--steps", o->train.trainer.steps, "Optimisation steps")
      ->check(CLI::Range(int64_t{1}, int64_t{100000000}))
      ->capture_default_str();
  ctfgen::cli::add_allow_steps_change_flag(app, o->train.trainer);
  app.add_option("--batch", o->train.batch,
                 "Batch size per process (global batch: processes x this)")
      ->check(CLI::Range(int64_t{1}, int64_t{65536}))
      ->capture_default_str();
  app.add_option("--width", o->model.width, "Channels of the first stage (features: 4x width)")
      ->check(CLI::Range(int64_t{1}, int64_t{1024}))
      ->capture_default_str();
  app.add_option("--embed-dim", o->model.embed_dim,
                 "Widen the last stage to this many channels by a 1x1 conv (features; 0 = off)")
      ->check(CLI::Range(int64_t{0}, int64_t{8192}))
      ->capture_default_str();
  app.add_option("--lr", o->train.optim.lr, "Peak learning rate (AdamW, cosine schedule)")
      ->check(CLI::Range(1e-7, 1.0))
      ->capture_default_str();
  app.add_option("--seed", o->train.trainer.seed, "Seed of initialisation and data order")
      ->capture_default_str();
  app.add_option("--checkpoint-every", o->train.trainer.checkpoint_every,
                 "Steps between checkpoints (0 = only at the end)")
      ->check(CLI::Range(int64_t{0}, int64_t{100000000}))
      ->capture_default_str();
  app.add_option("--log-every", o->train.trainer.log_every, "Steps between logged losses")
      ->check(CLI::Range(int64_t{1}, int64_t{100000000}))
      ->capture_default_str();
  app.add_flag("--hflip", o->train.hflip,
               "Random horizontal flips (off by default: shoes and sprites face one way)");
  app.add_option("--shift", o->train.shift,
                 "Random translation by up to this many pixels (edge padding; 0 = off)")
      ->check(CLI::Range(int64_t{0}, int64_t{16}))
      ->capture_default_str();
  app.add_option("--run-dir", o->run_dir,
                 "Training directory (checkpoint, log; resumes if present; default <out>.run)");
  app.add_option("--out", o->out, "Output classifier component (.safetensors)")->required();
  app.add_flag("--json", o->json, "Print the result as JSON");
  return [o] {
    using namespace ctfgen;
    o->train.validate();
    auto dist = cli::start_distributed();
    auto train_cfg = o->data;
    train_cfg.split = "train";
    auto test_cfg = o->data;
    test_cfg.split = "test";
    test_cfg.limit = o->test_limit;
    auto train = data::load_dataset(train_cfg);
    auto test = data::load_dataset(test_cfg);
    CTFGEN_CHECK(train.size() > 0 && test.size() > 0, "train-classifier: empty dataset split");
    eval::ClassifierConfig mc = o->model;
    mc.in_channels = train.images.size(1);
    mc.image_size = train.images.size(2);
    mc.num_classes = static_cast<int64_t>(train.class_names.size());
    CTFGEN_CHECK(train.images.size(2) == train.images.size(3),
                 "train-classifier: images must be square, got ", train.images.size(2), "x",
                 train.images.size(3));
    mc.validate();
    log::info("train-classifier: ", train.name, " ", train.size(), " train / ", test.size(),
              " test images, ", mc.in_channels, "x", mc.image_size, "x", mc.image_size, ", ",
              mc.num_classes, " classes");
    seed_global(o->train.trainer.seed);
    eval::Classifier model(mc);
    model->to(default_device());  // before train_classifier builds the optimiser
    const std::string run_dir = o->run_dir.empty() ? o->out + ".run" : o->run_dir;
    auto r = eval::train_classifier(model, train.images, train.labels, test.images, test.labels,
                                    o->train, run_dir, dist.get());
    if (!dist->is_main()) return;  // rank 0 writes and reports
    nlohmann::json meta = {{"dataset", train.name},
                           {"dataset_config", train_cfg.to_json()},
                           {"class_names", train.class_names},
                           {"steps", r.steps},
                           {"seed", o->train.trainer.seed},
                           {"test_accuracy", r.test_accuracy},
                           {"test_images", test.size()},
                           {"train", o->train.to_json()}};
    eval::save_classifier(o->out, model, meta);
    nlohmann::json result = {{"out", o->out},         {"dataset", train.name},
                             {"steps", r.steps},      {"test_accuracy", r.test_accuracy},
                             {"test_images", test.size()}, {"train_loss", r.train_loss},
                             {"seconds", r.seconds},  {"resumed", r.resumed}};
    if (o->json) {
      cli::print_json(result.dump(2));
    } else {
      std::printf("test accuracy %.2f %% (%lld images) after %lld steps in %.1f s -> %s\n",
                  100.0 * r.test_accuracy, static_cast<long long>(test.size()),
                  static_cast<long long>(r.steps), r.seconds, o->out.c_str());
    }
  };
}

CTFGEN_COMMAND("train-classifier",
               "Train the feature classifier used for FID/IS/precision/recall on a dataset",
               setup_train_classifier);

}  // namespace ctfgen::cmd_train_classifier

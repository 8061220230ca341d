// Config structs: JSON round trips, unknown fields and wrong types, validate() messages that name
// the field and the value.
#include <gtest/gtest.h>

#include <functional>

#include "core/error.h"
#include "core/json_config.h"
#include "data/dataset.h"
#include "pipeline/demo.h"
#include "pipeline/evaluate_generator.h"
#include "pipeline/generate.h"
#include "pipeline/train_generator.h"

namespace ctfgen::test {
namespace {

template <typename F>
std::string usage_error_of(F&& f) {
  try {
    f();
  } catch (const UsageError& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("WRONG EXCEPTION TYPE: ") + e.what();
  }
  return "<no error>";
}

}  // namespace

TEST(ConfigValidation, JsonFieldsRejectsUnknownFieldsAndWrongTypes) {
  nlohmann::json j = {{"a", 3}, {"b", "x"}};
  int a = 0;
  std::string b;
  JsonFields ok(j, "thing");
  ok.get("a", a);
  ok.get("b", b);
  EXPECT_NO_THROW(ok.finish());
  EXPECT_EQ(a, 3);
  EXPECT_EQ(b, "x");

  JsonFields unknown(j, "thing");
  unknown.get("a", a);
  auto msg = usage_error_of([&] { unknown.finish(); });
  EXPECT_NE(msg.find("unknown field 'b'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("thing"), std::string::npos) << msg;

  JsonFields wrong(j, "thing");
  msg = usage_error_of([&] { wrong.get("b", a); });
  EXPECT_NE(msg.find("field 'b' has the wrong type"), std::string::npos) << msg;

  msg = usage_error_of([&] { JsonFields not_object(nlohmann::json::array(), "thing"); });
  EXPECT_NE(msg.find("expected a JSON object"), std::string::npos) << msg;

  int kept = 42;  // absent keys keep the default
  JsonFields absent(nlohmann::json::object(), "thing");
  absent.get("missing", kept);
  EXPECT_EQ(kept, 42);
}

TEST(ConfigValidation, DatasetConfigJsonRoundTrip) {
  data::DatasetConfig c;
  c.name = "imagefolder";
  c.path = "/some/where";
  c.split = "test";
  c.image_size = 64;
  c.skip_bad = true;
  c.limit = 17;
  c.test_fraction = 0.25;
  c.split_seed = 9;
  auto back = data::DatasetConfig::from_json(c.to_json());
  EXPECT_EQ(back.to_json(), c.to_json());
  EXPECT_EQ(back.limit, 17);
  EXPECT_EQ(back.split_seed, 9u);
  // Absent fields keep their defaults.
  auto d = data::DatasetConfig::from_json({{"name", "emoji"}});
  EXPECT_EQ(d.split, "train");
  EXPECT_EQ(d.image_size, 0);
  EXPECT_NO_THROW(d.validate());
  EXPECT_NO_THROW(data::DatasetConfig().validate());
}

TEST(ConfigValidation, DatasetConfigFromJsonErrors) {
  auto msg = usage_error_of([] { data::DatasetConfig::from_json({{"nmae", "emoji"}}); });
  EXPECT_NE(msg.find("unknown field 'nmae'"), std::string::npos) << msg;
  msg = usage_error_of([] { data::DatasetConfig::from_json({{"image_size", "big"}}); });
  EXPECT_NE(msg.find("'image_size' has the wrong type"), std::string::npos) << msg;
  msg = usage_error_of([] { data::DatasetConfig::from_json({{"skip_bad", 1}}); });
  EXPECT_NE(msg.find("'skip_bad'"), std::string::npos) << msg;
  // Integer fields refuse fractions, out-of-range values and negative values for unsigned fields
  // (nlohmann would truncate, hit undefined behaviour or wrap).
  for (const auto& [j, field] : std::vector<std::pair<nlohmann::json, std::string>>{
           {{{"limit", 2.5}}, "limit"}, {{{"image_size", 1e300}}, "image_size"},
           {{{"split_seed", -1}}, "split_seed"}}) {
    msg = usage_error_of([&] { data::DatasetConfig::from_json(j); });
    EXPECT_NE(msg.find("'" + field + "' must be an integer"), std::string::npos) << msg;
  }
  msg = usage_error_of([] { data::DatasetConfig::from_json("fashion-mnist"); });
  EXPECT_NE(msg.find("expected a JSON object"), std::string::npos) << msg;
}

TEST(ConfigValidation, DatasetConfigValidateNamesFieldAndValue) {
  struct Bad {
    std::function<void(data::DatasetConfig&)> set;
    std::vector<std::string> want;
  };
  const std::vector<Bad> bad = {
      {[](auto& c) { c.name = "mnist"; }, {"dataset.name", "mnist"}},
      {[](auto& c) { c.split = "val"; }, {"dataset.split", "val"}},
      {[](auto& c) { c.image_size = -3; }, {"dataset.image_size", "-3"}},
      {[](auto& c) { c.image_size = 100000; }, {"dataset.image_size", "100000"}},
      {[](auto& c) { c.image_size = 16; }, {"dataset.image_size", "16", "28"}},
      {[](auto& c) { c.limit = -1; }, {"dataset.limit", "-1"}},
      {[](auto& c) { c.test_fraction = 1.0; }, {"dataset.test_fraction", "1"}},
      {[](auto& c) { c.test_fraction = -0.5; }, {"dataset.test_fraction", "-0.5"}},
      {[](auto& c) { c.name = "imagefolder"; }, {"dataset.path", "imagefolder"}},
  };
  for (const auto& b : bad) {
    data::DatasetConfig c;
    b.set(c);
    auto msg = usage_error_of([&] { c.validate(); });
    for (const auto& w : b.want) EXPECT_NE(msg.find(w), std::string::npos) << "want '" << w << "' in: " << msg;
  }
  data::DatasetConfig ok;
  ok.name = "imagefolder";
  ok.path = "x";
  ok.image_size = 16;  // any size is fine for ImageFolder
  EXPECT_NO_THROW(ok.validate());
  // load_dataset validates before touching the disk.
  data::DatasetConfig c;
  c.split = "validation";
  EXPECT_THROW(data::load_dataset(c), UsageError);
}

TEST(ConfigValidation, GeneratorTrainingRefusesFp16WithoutLossScaling) {
  pipeline::GeneratorTrainConfig c;
  c.amp = "bf16";
  EXPECT_NO_THROW(c.validate());
  c.amp = "fp16";
  const std::string msg = usage_error_of([&] { c.validate(); });
  EXPECT_NE(msg.find("'fp16' needs loss scaling"), std::string::npos) << msg;
}

// GeneratorTrainConfig through its field list: the stage as its name, nested optimiser and
// trainer configs, free-form model overrides; bad stages, unknown and mistyped fields refused.
TEST(ConfigValidation, GeneratorTrainConfigJsonRoundTripAndErrors) {
  pipeline::GeneratorTrainConfig c;
  c.stage = pipeline::GeneratorStage::Aux;
  c.preset = "base";
  c.model_overrides = {{"dim", 192}};
  c.batch_size = 12;
  c.optim.lr = 3e-4;
  c.trainer.steps = 77;
  c.ema_decay = 0.999;
  c.val_batches = 2;
  c.val_every = 5;
  c.coarse_noise = 0.1;
  c.amp = "bf16";
  auto j = c.to_json();
  EXPECT_EQ(j.at("stage"), "aux");
  EXPECT_EQ(j.at("optim").at("lr"), 3e-4);
  auto back = pipeline::GeneratorTrainConfig::from_json(j);
  EXPECT_EQ(back.to_json(), j);
  EXPECT_EQ(back.stage, pipeline::GeneratorStage::Aux);
  EXPECT_EQ(back.trainer.steps, 77);
  EXPECT_EQ(back.model_overrides.at("dim"), 192);
  // Absent fields keep their defaults, nested ones too.
  auto d = pipeline::GeneratorTrainConfig::from_json({{"stage", "baseline"}, {"optim", {{"lr", 1e-3}}}});
  EXPECT_EQ(d.stage, pipeline::GeneratorStage::Baseline);
  EXPECT_EQ(d.optim.lr, 1e-3);
  EXPECT_EQ(d.optim.weight_decay, pipeline::GeneratorTrainConfig().optim.weight_decay);
  EXPECT_EQ(d.batch_size, 64);
  auto msg = usage_error_of([] { pipeline::GeneratorTrainConfig::from_json({{"stage", "fine"}}); });
  EXPECT_NE(msg.find("'fine'"), std::string::npos) << msg;
  msg = usage_error_of([] { pipeline::GeneratorTrainConfig::from_json({{"stage", 3}}); });
  EXPECT_NE(msg.find("stage must be a string"), std::string::npos) << msg;
  msg = usage_error_of([] { pipeline::GeneratorTrainConfig::from_json({{"batch", 3}}); });
  EXPECT_NE(msg.find("unknown field 'batch'"), std::string::npos) << msg;
  msg = usage_error_of([] { pipeline::GeneratorTrainConfig::from_json({{"batch_size", 0}}); });
  EXPECT_NE(msg.find("batch_size must be in [1, 65536], got 0"), std::string::npos) << msg;
}

// The configs that runs record in their summaries (generate, eval, demo) list their fields once
// too: every field is written (the demo's dataset_path and the eval's cache_dir and keep_images
// were missing before), read back equal, and unknown fields are refused.
TEST(ConfigValidation, RecordedRunConfigsRoundTripEveryField) {
  pipeline::GenerateConfig g;
  g.stage1.top_k = 7;
  g.stage2.temperature = 0.5;
  g.restrict_to_cluster = true;
  g.batch_size = 3;
  auto gj = g.to_json();
  g.fine_decoder = "centroid";
  gj = g.to_json();
  EXPECT_EQ(gj.size(), 6u);
  EXPECT_EQ(gj.at("stage1").at("top_k"), 7);
  EXPECT_EQ(gj.at("fine_decoder"), "centroid");
  EXPECT_EQ(pipeline::GenerateConfig::from_json(gj).to_json(), gj);
  EXPECT_EQ(pipeline::GenerateConfig::from_json({{"batch_size", 2}}).stage1.to_json(),
            pipeline::GenerateConfig().stage1.to_json());

  pipeline::GeneratorEvalConfig e;
  e.num_samples = 50;
  e.cache_dir = "elsewhere";
  e.keep_images = 4;
  e.reference.split = "train";
  auto ej = e.to_json();
  EXPECT_EQ(ej.size(), 7u);
  EXPECT_EQ(ej.at("cache_dir"), "elsewhere");
  EXPECT_EQ(ej.at("keep_images"), 4);
  auto eb = pipeline::GeneratorEvalConfig::from_json(ej);
  EXPECT_EQ(eb.to_json(), ej);
  EXPECT_EQ(eb.reference.split, "train");

  pipeline::DemoConfig d;
  d.dataset_path = "some/where";
  d.ar_steps = 9;
  d.baseline = false;
  auto dj = d.to_json();
  EXPECT_EQ(dj.size(), 13u);
  EXPECT_EQ(dj.at("dataset_path"), "some/where");
  auto db = pipeline::DemoConfig::from_json(dj);
  EXPECT_EQ(db.to_json(), dj);
  EXPECT_FALSE(db.baseline);

  // A partial nested object patches the field's defaults (not the nested type's own):
  // ctf_stage1()'s guidance survives a stage1 that sets only top_k, the test split a reference
  // that sets only the dataset.
  auto partial = pipeline::GenerateConfig::from_json({{"stage1", {{"top_k", 5}}}});
  auto expect_stage1 = sampling::SamplingConfig::ctf_stage1();
  expect_stage1.top_k = 5;
  EXPECT_EQ(partial.stage1.to_json(), expect_stage1.to_json());
  EXPECT_NE(expect_stage1.to_json(), sampling::SamplingConfig().to_json());
  auto partial_eval = pipeline::GeneratorEvalConfig::from_json({{"reference", {{"name", "emoji"}}}});
  EXPECT_EQ(partial_eval.reference.split, "test");
  EXPECT_EQ(partial_eval.reference.name, "emoji");
  EXPECT_NE(usage_error_of([] {
              pipeline::GenerateConfig::from_json({{"stage1", {{"topk", 5}}}});
            }).find("topk"),
            std::string::npos);

  auto msg = usage_error_of([] { pipeline::DemoConfig::from_json({{"steps", 3}}); });
  EXPECT_NE(msg.find("demo config: unknown field 'steps'"), std::string::npos) << msg;
  msg = usage_error_of([] { pipeline::GeneratorEvalConfig::from_json({{"chunk", "big"}}); });
  EXPECT_NE(msg.find("field 'chunk' has the wrong type"), std::string::npos) << msg;
  msg = usage_error_of([] { pipeline::GenerateConfig::from_json({{"batch_size", -1.5}}); });
  EXPECT_NE(msg.find("'batch_size' must be an integer"), std::string::npos) << msg;
}

}  // namespace ctfgen::test

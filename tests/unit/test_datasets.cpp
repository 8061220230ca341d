// IDX parsing, dataset loaders (Fashion-MNIST, ImageFolder, emoji), the held-out split rule,
// take() and random_hflip().
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <zlib.h>

#include <ctime>
#include <filesystem>

#include "core/error.h"
#include "core/fs.h"
#include "core/rng.h"
#include "data/dataset.h"
#include "io/idx.h"
#include "io/image_io.h"
#include "test_util.h"

namespace ctfgen::test {
namespace {

std::vector<uint8_t> gzip(const std::vector<uint8_t>& raw) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::vector<uint8_t> out(deflateBound(&z, raw.size()) + 64);
  z.next_in = const_cast<Bytef*>(raw.data());
  z.avail_in = static_cast<uInt>(raw.size());
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

std::string idx_error(const std::vector<uint8_t>& bytes) {
  try {
    io::parse_idx(bytes.data(), bytes.size(), "probe.idx");
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

at::Tensor solid(int64_t h, int64_t w, std::vector<int> rgb) {
  auto t = torch::empty({h, w, static_cast<int64_t>(rgb.size())}, torch::kUInt8);
  for (size_t c = 0; c < rgb.size(); ++c) t.select(2, static_cast<int64_t>(c)).fill_(rgb[c]);
  return t;
}

}  // namespace

TEST(Idx, RawAndGzipRoundTrip) {
  auto t = torch::arange(2 * 3 * 4, torch::kInt).to(torch::kUInt8).view({2, 3, 4});
  auto raw = io::serialize_idx(t);
  EXPECT_EQ(raw.size(), 16u + 24u);
  EXPECT_EQ(raw[2], 0x08);
  EXPECT_EQ(raw[3], 3);
  EXPECT_TRUE(torch::equal(io::parse_idx(raw.data(), raw.size(), "r"), t));
  auto gz = gzip(raw);
  EXPECT_TRUE(torch::equal(io::parse_idx(gz.data(), gz.size(), "g"), t));
  // Two concatenated gzip members (as `cat a.gz b.gz`) form one stream.
  std::vector<uint8_t> a(raw.begin(), raw.begin() + 10), b(raw.begin() + 10, raw.end());
  auto ga = gzip(a), gb = gzip(b);
  ga.insert(ga.end(), gb.begin(), gb.end());
  EXPECT_TRUE(torch::equal(io::parse_idx(ga.data(), ga.size(), "g2"), t));
  auto labels = torch::tensor({3, 1, 4}, torch::kUInt8);
  auto lraw = io::serialize_idx(labels);
  EXPECT_EQ(lraw[3], 1);
  EXPECT_TRUE(torch::equal(io::parse_idx(lraw.data(), lraw.size(), "l"), labels));
}

TEST(Idx, MalformedInputsAreRejectedWithTheFileName) {
  auto raw = io::serialize_idx(torch::zeros({2, 2, 2}, torch::kUInt8));
  auto with = [&](size_t i, uint8_t v) {
    auto b = raw;
    b[i] = v;
    return b;
  };
  std::vector<std::pair<std::vector<uint8_t>, std::string>> cases = {
      {{}, "shorter than the magic"},
      {{0, 0}, "shorter than the magic"},
      {with(0, 1), "bad magic"},
      {with(2, 0x0D), "data type"},
      {with(3, 0), "dimension count"},
      {with(3, 5), "dimension count"},
      {std::vector<uint8_t>(raw.begin(), raw.begin() + 9), "header truncated"},
      {std::vector<uint8_t>(raw.begin(), raw.end() - 1), "length mismatch"},
      {with(7, 3), "length mismatch"},
      {{0, 0, 8, 4, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF},
       "exceed the limit"},
  };
  auto trailing = raw;
  trailing.push_back(0);
  cases.push_back({trailing, "length mismatch"});
  auto gz = gzip(raw);
  cases.push_back({std::vector<uint8_t>(gz.begin(), gz.begin() + gz.size() / 2), "truncated"});
  auto gz_trailing = gz;
  gz_trailing.push_back(7);
  cases.push_back({gz_trailing, "trailing bytes"});
  auto gz_more = gzip(trailing);
  cases.push_back({gz_more, "trailing bytes"});
  auto gz_short = gzip(std::vector<uint8_t>(raw.begin(), raw.end() - 3));
  cases.push_back({gz_short, "truncated"});
  auto gz_bad = gz;
  gz_bad[gz.size() / 2] ^= 0xFF;
  gz_bad[gz.size() / 2 + 1] ^= 0xFF;
  cases.push_back({gz_bad, ""});
  for (const auto& [bytes, want] : cases) {
    auto msg = idx_error(bytes);
    EXPECT_NE(msg.find("probe.idx"), std::string::npos) << msg;
    EXPECT_NE(msg.find(want), std::string::npos) << "want '" << want << "', got: " << msg;
  }
}

TEST(Datasets, FashionFromSyntheticIdxFiles) {
  TempDir d;
  auto imgs = torch::randint(0, 256, {5, 28, 28}, make_generator(1), torch::kUInt8);
  auto labs = torch::tensor({0, 9, 3, 3, 1}, torch::kUInt8);
  test::write_bytes(d.file("train-images-idx3-ubyte"), io::serialize_idx(imgs));
  test::write_bytes(d.file("train-labels-idx1-ubyte.gz"), gzip(io::serialize_idx(labs)));
  data::DatasetConfig cfg;
  cfg.path = d.path();
  auto ds = data::load_dataset(cfg);
  ASSERT_EQ(ds.images.sizes(), (std::vector<int64_t>{5, 1, 28, 28}));
  EXPECT_TRUE(torch::equal(io::to_uint8(ds.images).squeeze(1), imgs));
  EXPECT_TRUE(torch::equal(ds.labels, labs.to(torch::kLong)));
  EXPECT_EQ(ds.class_names.size(), 10u);
  EXPECT_EQ(ds.class_names[9], "Ankle boot");
  cfg.image_size = 32;
  cfg.limit = 2;
  auto padded = data::load_dataset(cfg);
  ASSERT_EQ(padded.images.sizes(), (std::vector<int64_t>{2, 1, 32, 32}));
  EXPECT_TRUE(torch::equal(padded.images.slice(2, 2, 30).slice(3, 2, 30), ds.images.slice(0, 0, 2)));
  EXPECT_TRUE((padded.images.slice(2, 0, 2) == -1).all().item<bool>());
  EXPECT_TRUE((padded.images.slice(3, 30, 32) == -1).all().item<bool>());
  cfg.split = "test";  // t10k files are absent
  EXPECT_THROW(data::load_dataset(cfg), Error);
  // Labels that disagree with the image count are an error naming the label file.
  test::write_bytes(d.file("train-labels-idx1-ubyte.gz"), gzip(io::serialize_idx(labs.slice(0, 0, 4))));
  cfg.split = "train";
  try {
    data::load_dataset(cfg);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("train-labels-idx1-ubyte.gz"), std::string::npos) << e.what();
  }
}

TEST(Datasets, FashionMnistFromDebianPackage) {
  const std::string dir = data::default_dataset_path("fashion-mnist");
  if (!fs::exists(dir + "/train-images-idx3-ubyte.gz")) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  data::DatasetConfig cfg;
  const std::clock_t c0 = std::clock();  // CPU time: the shared machine's load does not count
  auto ds = data::load_dataset(cfg);
  const double secs = static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC;
  ASSERT_EQ(ds.images.sizes(), (std::vector<int64_t>{60000, 1, 28, 28}));
  EXPECT_LT(secs, 5.0) << "loading 60k images took " << secs << " s of CPU";
  EXPECT_GE(ds.images.min().item<float>(), -1.0f);
  EXPECT_LE(ds.images.max().item<float>(), 1.0f);
  EXPECT_FLOAT_EQ(ds.images[0][0][0][0].item<float>(), -1.0f);  // corner pixels are background
  auto counts = torch::bincount(ds.labels);
  ASSERT_EQ(counts.size(0), 10);
  EXPECT_TRUE((counts == 6000).all().item<bool>());
  cfg.split = "test";
  cfg.image_size = 32;
  auto test = data::load_dataset(cfg);
  EXPECT_EQ(test.images.sizes(), (std::vector<int64_t>{10000, 1, 32, 32}));
}

TEST(Datasets, ImageFolderSplitCropAndErrors) {
  TempDir d;
  const std::string root = d.file("folder");
  const std::vector<std::pair<std::string, std::vector<int>>> classes = {
      {"zebra", {0, 0, 255}}, {"ant", {255, 0, 0}}, {"cat", {0, 255, 0}}};
  for (const auto& [name, rgb] : classes) {
    fs::ensure_dir(root + "/" + name);
    for (int i = 0; i < 8; ++i) io::write_png(str_cat(root, "/", name, "/img", i, ".png"), solid(40, 30, rgb));
  }
  data::DatasetConfig cfg;
  cfg.name = "imagefolder";
  cfg.path = root;
  cfg.image_size = 16;
  cfg.test_fraction = 0.25;
  auto train = data::load_dataset(cfg);
  cfg.split = "test";
  auto test = data::load_dataset(cfg);
  EXPECT_EQ(train.class_names, (std::vector<std::string>{"ant", "cat", "zebra"}));
  EXPECT_EQ(train.size(), 18);  // 6 of 8 per class
  EXPECT_EQ(test.size(), 6);
  ASSERT_EQ(train.images.sizes(), (std::vector<int64_t>{18, 3, 16, 16}));
  // Interleaved class order; every image has its class colour.
  EXPECT_TRUE(torch::equal(train.labels.slice(0, 0, 3), torch::tensor({0, 1, 2}, torch::kLong)));
  for (int64_t i = 0; i < train.size(); ++i) {
    const int64_t k = train.labels[i].item<int64_t>();
    const int channel = k == 0 ? 0 : (k == 1 ? 1 : 2);
    EXPECT_FLOAT_EQ(train.images[i][channel].mean().item<float>(), 1.0f);
  }
  cfg.limit = 4;
  EXPECT_TRUE(torch::equal(data::load_dataset(cfg).labels, torch::tensor({0, 1, 2, 0}, torch::kLong)));
  cfg.limit = 0;

  // A corrupt file fails the load (naming it) unless skip_bad, where it is skipped and counted.
  const auto mask = data::held_out_mask({"img0.png", "img1.png", "img2.png", "img3.png", "img4.png", "img5.png",
                                         "img6.png", "img7.png"},
                                        "cat", 0.25, 0);
  size_t victim = 0;
  while (!mask[victim]) ++victim;  // a file of the test split
  const std::string bad = str_cat(root, "/cat/img", victim, ".png");
  test::write_bytes(bad, {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A, 1, 2, 3});
  try {
    data::load_dataset(cfg);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
  }
  cfg.skip_bad = true;
  auto skipped = data::load_dataset(cfg);
  EXPECT_EQ(skipped.skipped, 1);
  EXPECT_EQ(skipped.size(), 5);

  // Different sizes without image_size are an error.
  cfg.skip_bad = false;
  cfg.image_size = 0;
  io::write_png(bad, solid(10, 10, {1, 2, 3}));
  EXPECT_THROW(data::load_dataset(cfg), Error);
}

TEST(Datasets, ImageFolderExplicitSplitFolders) {
  TempDir d;
  for (const std::string split : {"train", "test"})
    for (const std::string cls : {"b", "a"}) {
      fs::ensure_dir(d.file(split + "/" + cls));
      for (int i = 0; i < (split == "train" ? 3 : 1); ++i)
        io::write_png(d.file(str_cat(split, "/", cls, "/", i, ".jpg.png")), solid(8, 8, {cls == "a" ? 0 : 255, 0, 0}));
    }
  data::DatasetConfig cfg;
  cfg.name = "imagefolder";
  cfg.path = d.path();
  auto train = data::load_dataset(cfg);
  EXPECT_EQ(train.size(), 6);
  EXPECT_EQ(train.class_names, (std::vector<std::string>{"a", "b"}));
  cfg.split = "test";
  auto test = data::load_dataset(cfg);
  EXPECT_EQ(test.size(), 2);
  EXPECT_FLOAT_EQ(test.images[1][0][0][0].item<float>(), 1.0f);  // class b is red
}

// Transparency: a half-transparent RGBA pixel composited onto the chosen background, checked
// against values computed by hand from the straight-alpha rule
// out = floor((c * a + bg * (255 - a) + 127) / 255) (io::composite_alpha).
TEST(Datasets, ImageFolderAlphaBackground) {
  TempDir d;
  for (const std::string cls : {"a", "b"}) {
    fs::ensure_dir(d.file(cls));
    auto rgba = torch::empty({4, 4, 4}, torch::kUInt8);
    rgba.select(2, 0).fill_(200);
    rgba.select(2, 1).fill_(100);
    rgba.select(2, 2).fill_(50);
    rgba.select(2, 3).fill_(128);
    rgba[0][0][3] = 0;    // fully transparent: the background itself
    rgba[0][1][3] = 255;  // opaque: the pixel itself
    io::write_png(d.file(cls + "/x.png"), rgba);
  }
  data::DatasetConfig cfg;
  cfg.name = "imagefolder";
  cfg.path = d.path();
  cfg.test_fraction = 0.0;
  auto pixel = [&](const std::string& bg, int64_t x) {
    cfg.alpha_background = bg;
    auto u8 = io::to_uint8(data::load_dataset(cfg).images[0]);  // [3, 4, 4]
    return std::vector<int64_t>{u8[0][0][x].item<int64_t>(), u8[1][0][x].item<int64_t>(),
                                u8[2][0][x].item<int64_t>()};
  };
  // white: (200*128 + 255*127 + 127) / 255 = 227.9 -> 227; (100*128 + 32385 + 127) / 255 = 177.7 -> 177;
  // (50*128 + 32385 + 127) / 255 = 152.6 -> 152.
  EXPECT_EQ(pixel("white", 2), (std::vector<int64_t>{227, 177, 152}));
  // black: (200*128 + 127) / 255 = 100.9 -> 100; (12800 + 127) / 255 = 50.7 -> 50; (6400 + 127) / 255 = 25.6 -> 25.
  EXPECT_EQ(pixel("black", 2), (std::vector<int64_t>{100, 50, 25}));
  // R,G,B = 10,20,30: (25600 + 1270 + 127) / 255 = 105.9 -> 105; (12800 + 2540 + 127) / 255 = 60.7 -> 60;
  // (6400 + 3810 + 127) / 255 = 40.5 -> 40.
  EXPECT_EQ(pixel("10,20,30", 2), (std::vector<int64_t>{105, 60, 40}));
  EXPECT_EQ(pixel("10,20,30", 0), (std::vector<int64_t>{10, 20, 30}));
  EXPECT_EQ(pixel("black", 1), (std::vector<int64_t>{200, 100, 50}));
  for (const std::string bad : {"grey", "1,2", "1,2,256", "1,,3", "-1,2,3", "1,2,3,4", ""}) {
    cfg.alpha_background = bad;
    try {
      data::load_dataset(cfg);
      ADD_FAILURE() << "accepted alpha_background '" << bad << "'";
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find("dataset.alpha_background"), std::string::npos) << e.what();
    }
  }
}

TEST(Datasets, EmojiFromSyntheticPackage) {
  TempDir d;
  const std::string pkg = d.file("node_modules/emoji-datasource-google");
  fs::ensure_dir(pkg + "/img/google/64");
  nlohmann::json list = nlohmann::json::array();
  const std::vector<std::string> cats = {"Smileys & Emotion", "Flags", "Component"};
  for (size_t c = 0; c < cats.size(); ++c)
    for (int i = 0; i < 4; ++i) {
      std::string image = str_cat(c, "-", i, ".png");
      list.push_back({{"image", image}, {"category", cats[c]}, {"has_img_google", true}});
      auto rgba = solid(64, 64, {static_cast<int>(40 * c), 0, 0, 255});
      rgba.slice(0, 0, 32).select(2, 3).fill_(0);  // top half transparent
      io::write_png(pkg + "/img/google/64/" + image, rgba);
    }
  list.push_back({{"image", "none.png"}, {"category", "Flags"}, {"has_img_google", false}});
  fs::atomic_write_text(pkg + "/emoji.json", list.dump());
  data::DatasetConfig cfg;
  cfg.name = "emoji";
  cfg.path = d.path();
  cfg.test_fraction = 0.25;
  auto ds = data::load_dataset(cfg);
  EXPECT_EQ(ds.class_names, (std::vector<std::string>{"Flags", "Smileys & Emotion"}));
  ASSERT_EQ(ds.images.sizes(), (std::vector<int64_t>{6, 3, 64, 64}));
  EXPECT_TRUE((ds.images.slice(2, 0, 32) == 1.0f).all().item<bool>());  // composited on white
  EXPECT_FLOAT_EQ(ds.images[0][1][40][10].item<float>(), -1.0f);
  cfg.image_size = 32;
  cfg.split = "test";
  auto small = data::load_dataset(cfg);
  EXPECT_EQ(small.images.sizes(), (std::vector<int64_t>{2, 3, 32, 32}));
  cfg.path = d.file("nowhere");
  EXPECT_THROW(data::load_dataset(cfg), Error);
}

TEST(Datasets, RealEmojiIfFetched) {
  const std::string dir = source_dir() + "/data/emoji";
  if (!fs::exists(dir + "/node_modules/emoji-datasource-google/emoji.json"))
    GTEST_SKIP() << "run scripts/fetch_emoji.sh first";
  data::DatasetConfig cfg;
  cfg.name = "emoji";
  cfg.path = dir;
  cfg.limit = 90;
  auto ds = data::load_dataset(cfg);
  EXPECT_EQ(ds.class_names.size(), 9u);
  EXPECT_EQ(ds.size(), 90);
  EXPECT_EQ(torch::bincount(ds.labels).min().item<int64_t>(), 10);
}

TEST(Datasets, HeldOutRuleIsDeterministicAndOrderFree) {
  std::vector<std::string> items;
  for (int i = 0; i < 50; ++i) items.push_back(str_cat("f", i, ".png"));
  auto m = data::held_out_mask(items, "cls", 0.2, 7);
  EXPECT_EQ(std::count(m.begin(), m.end(), true), 10);
  auto rev = items;
  std::reverse(rev.begin(), rev.end());
  auto mr = data::held_out_mask(rev, "cls", 0.2, 7);
  for (size_t i = 0; i < items.size(); ++i) EXPECT_EQ(m[i], mr[items.size() - 1 - i]);
  EXPECT_NE(m, data::held_out_mask(items, "cls", 0.2, 8));
  auto none = data::held_out_mask(items, "cls", 0.0, 7);
  EXPECT_EQ(std::count(none.begin(), none.end(), true), 0);
}

TEST(Datasets, TakeAndRandomHflip) {
  auto t = torch::arange(5, torch::kFloat).view({5, 1}) * torch::ones({1, 3});
  auto sel = data::take(t, torch::tensor({4, 0, 4}, torch::kLong));
  EXPECT_TRUE(torch::equal(sel.select(1, 0), torch::tensor({4.0f, 0.0f, 4.0f})));
  EXPECT_THROW(data::take(t, torch::tensor({5}, torch::kLong)), Error);
  EXPECT_THROW(data::take(t, torch::tensor({-1}, torch::kLong)), Error);
  EXPECT_THROW(data::take(t, torch::tensor({0}, torch::kInt)), Error);

  auto batch = torch::randn({400, 2, 3, 5}, make_generator(3));
  auto g1 = make_generator(11), g2 = make_generator(11);
  auto a = data::random_hflip(batch, g1);
  EXPECT_TRUE(torch::equal(a, data::random_hflip(batch, g2)));
  int flipped = 0;
  for (int64_t i = 0; i < batch.size(0); ++i) {
    const bool same = torch::equal(a[i], batch[i]);
    const bool mirrored = torch::equal(a[i], batch[i].flip({2}));
    EXPECT_TRUE(same || mirrored) << i;
    flipped += mirrored;
  }
  EXPECT_GT(flipped, 150);
  EXPECT_LT(flipped, 250);
  EXPECT_THROW(data::random_hflip(torch::zeros({2, 3}), g1), Error);
}

}  // namespace ctfgen::test

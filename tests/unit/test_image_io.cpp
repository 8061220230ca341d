// Image decoding/encoding, value conversions, resizing, alpha compositing and grids.
#include <gtest/gtest.h>
#include <stb/stb_image_write.h>
#include <torch/torch.h>

#include "core/error.h"
#include "core/fs.h"
#include "core/rng.h"
#include "io/bitmap_font.h"
#include "io/image_grid.h"
#include "io/image_io.h"
#include "test_util.h"

namespace ctfgen::test {
namespace {

at::Tensor random_image(int64_t h, int64_t w, int64_t c, uint64_t seed) {
  auto g = make_generator(seed);
  return torch::randint(0, 256, {h, w, c}, g, torch::kUInt8);
}


}  // namespace

TEST(ImageIo, PngRoundTripAllChannelCounts) {
  TempDir d;
  for (int c : {1, 3, 4}) {
    auto img = random_image(7, 11, c, 100 + c);
    std::string path = d.file(str_cat("img", c, ".png"));
    io::write_png(path, img);
    auto back = io::read_image(path, c);
    ASSERT_EQ(back.sizes(), img.sizes());
    EXPECT_TRUE(torch::equal(back, img)) << "channels " << c;
  }
}

TEST(ImageIo, ChannelConversionOnRead) {
  TempDir d;
  auto grey = random_image(5, 6, 1, 3);
  io::write_png(d.file("g.png"), grey);
  auto rgb = io::read_image(d.file("g.png"), 3);
  ASSERT_EQ(rgb.sizes(), (std::vector<int64_t>{5, 6, 3}));
  for (int c = 0; c < 3; ++c) EXPECT_TRUE(torch::equal(rgb.select(2, c), grey.select(2, 0)));
  auto rgba = io::read_image(d.file("g.png"), 4);
  EXPECT_TRUE((rgba.select(2, 3) == 255).all().item<bool>());
}

TEST(ImageIo, DecodesJpeg) {
  TempDir d;
  auto img = torch::full({16, 16, 3}, 0, torch::kUInt8);
  img.select(2, 0).fill_(200);
  img.select(2, 1).fill_(60);
  img.select(2, 2).fill_(30);
  ASSERT_TRUE(stbi_write_jpg(d.file("a.jpg").c_str(), 16, 16, 3, img.data_ptr<uint8_t>(), 95));
  auto back = io::read_image(d.file("a.jpg"), 3).to(torch::kInt);
  EXPECT_LE((back - img.to(torch::kInt)).abs().max().item<int>(), 3);
}

TEST(ImageIo, CorruptFilesGiveErrorsNamingTheFile) {
  TempDir d;
  write_bytes(d.file("junk.png"), {1, 2, 3, 4, 5, 6, 7, 8, 9});
  auto msg = error_of([&] { io::read_image(d.file("junk.png"), 3); });
  EXPECT_NE(msg.find("junk.png"), std::string::npos) << msg;
  EXPECT_NE(msg.find("not a PNG or JPEG"), std::string::npos) << msg;

  auto bytes = io::encode_png(random_image(20, 20, 3, 9));
  bytes.resize(bytes.size() / 2);
  write_bytes(d.file("trunc.png"), bytes);
  msg = error_of([&] { io::read_image(d.file("trunc.png"), 3); });
  EXPECT_NE(msg.find("trunc.png"), std::string::npos) << msg;
  EXPECT_NE(msg.find("cannot decode"), std::string::npos) << msg;

  write_bytes(d.file("x.gif"), {'G', 'I', 'F', '8', '9', 'a', 0, 0, 0, 0});
  EXPECT_THROW(io::read_image(d.file("x.gif"), 3), Error);
  EXPECT_THROW(io::read_image(d.file("missing.png"), 3), Error);
  EXPECT_THROW(io::read_image(d.file("junk.png"), 2), Error);
}

TEST(ImageIo, Uint8ConversionFollowsLlamaGen) {
  auto x = torch::tensor({-2.0f, -1.0f, -0.5f, 0.0f, 0.5f, 1.0f, 3.0f});
  auto u = io::to_uint8(x);
  std::vector<int> expect = {0, 0, 64, 128, 191, 255, 255};  // floor(127.5 x + 128)
  for (size_t i = 0; i < expect.size(); ++i) EXPECT_EQ(u[i].item<int>(), expect[i]) << i;
  auto all = torch::arange(256, torch::kInt).to(torch::kUInt8);
  auto f = io::from_uint8(all);
  EXPECT_FLOAT_EQ(f[0].item<float>(), -1.0f);
  EXPECT_FLOAT_EQ(f[255].item<float>(), 1.0f);
  EXPECT_TRUE(torch::equal(io::to_uint8(f), all));  // exact round trip for every level
  auto batch = torch::zeros({2, 3, 4, 5});
  EXPECT_EQ(io::to_uint8(batch).sizes(), batch.sizes());
}

TEST(ImageIo, ResizeAndHalve) {
  auto flat = torch::full({9, 13, 3}, 77, torch::kUInt8);
  auto r = io::resize_bicubic(flat, 20, 5);
  ASSERT_EQ(r.sizes(), (std::vector<int64_t>{20, 5, 3}));
  EXPECT_TRUE((r == 77).all().item<bool>());
  auto blocks = torch::tensor({0, 100, 20, 20, 200, 40, 20, 20}, torch::kUInt8).view({2, 4, 1});
  auto h = io::halve_box(blocks);
  ASSERT_EQ(h.sizes(), (std::vector<int64_t>{1, 2, 1}));
  EXPECT_NEAR(h[0][0][0].item<int>(), 85, 1);  // (0 + 100 + 200 + 40) / 4
  EXPECT_NEAR(h[0][1][0].item<int>(), 20, 1);
}

TEST(ImageIo, CenterCropShapesAndCentre) {
  // 100 x 60 -> halve once to 50 x 30 -> resize short side to 16 (27 x 16) -> crop rows 5..21.
  auto img = torch::zeros({100, 60, 3}, torch::kUInt8);
  img.slice(0, 40, 60).fill_(255);  // a horizontal white band in the middle
  auto c = io::center_crop_adm(img, 16);
  ASSERT_EQ(c.sizes(), (std::vector<int64_t>{16, 16, 3}));
  EXPECT_GT(c[8][8][0].item<int>(), 200);  // centre lies in the band
  EXPECT_LT(c[0][8][0].item<int>(), 30);   // top row outside it
  auto same = random_image(16, 16, 3, 4);
  EXPECT_TRUE(torch::equal(io::center_crop_adm(same, 16), same));
}

TEST(ImageIo, CenterCropMatchesPilOracle) {
  if (!have_python_torch()) GTEST_SKIP() << "/usr/bin/python3 with numpy unavailable";
  TempDir d;
  // A smooth image so that filter-edge differences between stb and PIL stay small.
  auto yy = torch::arange(90, torch::kFloat).view({90, 1, 1});
  auto xx = torch::arange(70, torch::kFloat).view({1, 70, 1});
  auto img = torch::cat({(yy * 2.5 + xx * 0).expand({90, 70, 1}), (xx * 3.0 + yy * 0).expand({90, 70, 1}),
                         ((yy + xx) * 1.4).expand({90, 70, 1})}, 2).clamp(0, 255).to(torch::kUInt8);
  io::write_png(d.file("in.png"), img);
  auto r = run_shell("/usr/bin/python3 " + source_dir() + "/tests/python/adm_crop.py " +
                     d.file("in.png") + " " + d.file("out.png") + " 24");
  if (r.exit_code != 0 && r.err.find("PIL") != std::string::npos) GTEST_SKIP() << "no PIL";
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto want = io::read_image(d.file("out.png"), 3).to(torch::kFloat);
  auto got = io::center_crop_adm(img, 24).to(torch::kFloat);
  ASSERT_EQ(got.sizes(), want.sizes());
  EXPECT_LT((got - want).abs().mean().item<float>(), 2.0f);
}

TEST(ImageIo, CompositeAlpha) {
  auto rgba = torch::tensor({10, 20, 30, 0, 10, 20, 30, 255, 200, 0, 100, 128}, torch::kUInt8).view({1, 3, 4});
  auto out = io::composite_alpha(rgba, {255, 255, 255});
  ASSERT_EQ(out.sizes(), (std::vector<int64_t>{1, 3, 3}));
  auto o = out.to(torch::kInt).flatten();
  std::vector<int> expect = {255, 255, 255, 10, 20, 30,
                             (200 * 128 + 255 * 127 + 127) / 255, (0 + 255 * 127 + 127) / 255,
                             (100 * 128 + 255 * 127 + 127) / 255};
  for (size_t i = 0; i < expect.size(); ++i) EXPECT_EQ(o[i].item<int>(), expect[i]) << i;
}

TEST(ImageGrid, LayoutAndPlacement) {
  auto imgs = torch::zeros({3, 1, 4, 5}, torch::kUInt8);
  for (int b = 0; b < 3; ++b) imgs[b].fill_(10 * (b + 1));
  io::GridOptions o;
  o.nrow = 2;
  o.padding = 2;
  auto g = io::make_grid(imgs, o);
  // width 2 + 2 * (5 + 2) = 16, height 2 + 2 * (4 + 2) = 14
  ASSERT_EQ(g.sizes(), (std::vector<int64_t>{14, 16, 3}));
  EXPECT_EQ(g[2][2][0].item<int>(), 10);
  EXPECT_EQ(g[2][9][1].item<int>(), 20);
  EXPECT_EQ(g[8][2][2].item<int>(), 30);
  EXPECT_EQ(g[8][9][0].item<int>(), 255);  // empty slot keeps the background
  EXPECT_EQ(g[0][0][0].item<int>(), 255);
  auto f = io::make_grid(torch::full({1, 3, 2, 2}, 1.0f));
  EXPECT_TRUE((f.slice(0, 2, 4).slice(1, 2, 4) == 255).all().item<bool>());
}

TEST(ImageGrid, CaptionsAndRowLabelsUseTheFont) {
  auto imgs = torch::full({2, 3, 8, 12}, -1.0f);  // black images
  io::GridOptions o;
  o.nrow = 1;
  o.padding = 1;
  o.captions = {"A", "b"};
  o.row_labels = {"x1", "y"};
  auto g = io::make_grid(imgs, o);
  const int64_t label_w = 2 * io::font::kCellW + 1;
  const int64_t cell_h = 8 + io::font::kCellH;
  ASSERT_EQ(g.sizes(), (std::vector<int64_t>{1 + 2 * (cell_h + 1), label_w + 1 + 12 + 1, 3}));
  // Caption "A" starts at x = label_w + 1, y = 1 + 8 + 1; check every glyph pixel.
  const int64_t x0 = label_w + 1, y0 = 1 + 8 + 1;
  int ink = 0;
  for (int y = 0; y < io::font::kGlyphH; ++y)
    for (int x = 0; x < io::font::kGlyphW; ++x) {
      int v = g[y0 + y][x0 + x][0].item<int>();
      EXPECT_EQ(v, io::font::glyph_pixel('A', x, y) ? 0 : 255) << x << "," << y;
      ink += v == 0;
    }
  EXPECT_GT(ink, 10);
  // The row label column holds dark pixels; without labels the grid is narrower.
  EXPECT_LT(g.slice(1, 0, label_w).min().item<int>(), 255);
  o.row_labels.clear();
  EXPECT_EQ(io::make_grid(imgs, o).size(1), 1 + 12 + 1);
  o.captions = {"only one"};
  EXPECT_THROW(io::make_grid(imgs, o), Error);
}

TEST(ImageGrid, FontCoversPrintableAscii) {
  for (char c = 33; c < 127; ++c) {
    int on = 0;
    for (int y = 0; y < io::font::kGlyphH; ++y) on += io::font::glyph_row(c, y) != 0;
    EXPECT_GT(on, 0) << "glyph '" << c << "' is blank";
  }
  for (int y = 0; y < io::font::kGlyphH; ++y) EXPECT_EQ(io::font::glyph_row(' ', y), 0);
  EXPECT_EQ(io::font::glyph_row('\x01', 0), io::font::glyph_row('?', 0));
}

}  // namespace ctfgen::test

#include "shim/go_format.h"

#include <cmath>
#include <limits>

#include "gtest/gtest.h"

namespace detcd::shim {
namespace {

// Expected texts are what Go 1.19's strconv / time print for the same values.
TEST(GoFormatTest, FloatG) {
  EXPECT_EQ(GoFormatFloatG(0), "0");
  EXPECT_EQ(GoFormatFloatG(1), "1");
  EXPECT_EQ(GoFormatFloatG(-1), "-1");
  EXPECT_EQ(GoFormatFloatG(0.005), "0.005");
  EXPECT_EQ(GoFormatFloatG(0.0001), "0.0001");
  EXPECT_EQ(GoFormatFloatG(0.00001), "1e-05");
  EXPECT_EQ(GoFormatFloatG(123456), "123456");
  EXPECT_EQ(GoFormatFloatG(1e6), "1e+06");
  EXPECT_EQ(GoFormatFloatG(1234567), "1.234567e+06");
  EXPECT_EQ(GoFormatFloatG(2147483648.0), "2.147483648e+09");
  EXPECT_EQ(GoFormatFloatG(24666112), "2.4666112e+07");
  EXPECT_EQ(GoFormatFloatG(1.8446744073709552e19), "1.8446744073709552e+19");
  EXPECT_EQ(GoFormatFloatG(0.1 + 0.2), "0.30000000000000004");
  EXPECT_EQ(GoFormatFloatG(8.192), "8.192");
  EXPECT_EQ(GoFormatFloatG(1e100), "1e+100");
  EXPECT_EQ(GoFormatFloatG(-2.5e-10), "-2.5e-10");
  EXPECT_EQ(GoFormatFloatG(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(GoFormatFloatG(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(GoFormatFloatG(std::nan("")), "NaN");
}

TEST(GoFormatTest, FloatF) {
  EXPECT_EQ(GoFormatFloatF(0), "0");
  EXPECT_EQ(GoFormatFloatF(0.25), "0.25");
  EXPECT_EQ(GoFormatFloatF(1e21), "1000000000000000000000");
  EXPECT_EQ(GoFormatFloatF(1.8446744073709552e19), "18446744073709552000");
  EXPECT_EQ(GoFormatFloatF(1e-7), "0.0000001");
  EXPECT_EQ(GoFormatFloatF(-123.5), "-123.5");
  EXPECT_EQ(GoFormatFloatF(3), "3");
}

TEST(GoFormatTest, Duration) {
  EXPECT_EQ(GoDurationString(0), "0s");
  EXPECT_EQ(GoDurationString(10), "10ns");
  EXPECT_EQ(GoDurationString(1500), "1.5\u00b5s");
  EXPECT_EQ(GoDurationString(3129268), "3.129268ms");
  EXPECT_EQ(GoDurationString(100'000'000), "100ms");
  EXPECT_EQ(GoDurationString(900'000'000), "900ms");
  EXPECT_EQ(GoDurationString(1'000'000'000), "1s");
  EXPECT_EQ(GoDurationString(30'000'000'000), "30s");
  EXPECT_EQ(GoDurationString(60'000'000'000), "1m0s");
  EXPECT_EQ(GoDurationString(3'723'500'000'000), "1h2m3.5s");
  EXPECT_EQ(GoDurationString(-1'500'000'000), "-1.5s");
  EXPECT_EQ(GoDurationString(std::numeric_limits<int64_t>::min()),
            "-2562047h47m16.854775808s");
}

}  // namespace
}  // namespace detcd::shim

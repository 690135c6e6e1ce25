#include "engine/wal/crc32c.h"

#include <gtest/gtest.h>

#include <string>

namespace detcd::crc32c {
namespace {

TEST(Crc32c, StandardVectors) {
  EXPECT_EQ(Value(""), 0u);
  EXPECT_EQ(Value("a"), 0xC1D04330u);
  EXPECT_EQ(Value("123456789"), 0xE3069283u);

  // RFC 3720, appendix B.4.
  std::string buf(32, '\0');
  EXPECT_EQ(Value(buf), 0x8A9136AAu);
  buf.assign(32, '\xff');
  EXPECT_EQ(Value(buf), 0x62A8AB43u);
  for (int i = 0; i < 32; ++i) buf[i] = static_cast<char>(i);
  EXPECT_EQ(Value(buf), 0x46DD794Eu);
  for (int i = 0; i < 32; ++i) buf[i] = static_cast<char>(31 - i);
  EXPECT_EQ(Value(buf), 0x113FDB5Cu);

  // An iSCSI read command (RFC 3720 B.4).
  const unsigned char iscsi[48] = {
      0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
      0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  };
  EXPECT_EQ(Value(reinterpret_cast<const char*>(iscsi), sizeof(iscsi)),
            0xD9963A56u);
}

TEST(Crc32c, ExtendMatchesWholeAtEverySplit) {
  std::string s;
  for (int i = 0; i < 100; ++i) s.push_back(static_cast<char>(i * 37 + 11));
  const uint32_t whole = Value(s);
  for (size_t cut = 0; cut <= s.size(); ++cut) {
    uint32_t c = Extend(Value(s.data(), cut), s.data() + cut, s.size() - cut);
    EXPECT_EQ(c, whole) << "cut " << cut;
  }
}

TEST(Crc32c, PortableAndHardwareAgree) {
  // Every length up to 300 and every start alignment, with bytes that set
  // every bit somewhere.
  std::string s;
  for (int i = 0; i < 320; ++i) s.push_back(static_cast<char>(i * 151 + 7));
  for (size_t start = 0; start < 9; ++start) {
    for (size_t n = 0; start + n <= 300; ++n) {
      ASSERT_EQ(Extend(0x12345678u, s.data() + start, n),
                ExtendPortable(0x12345678u, s.data() + start, n))
          << "start " << start << " n " << n;
    }
  }
  EXPECT_EQ(ExtendPortable(0, "123456789", 9), 0xE3069283u);
}

TEST(Crc32c, DifferentInputsDiffer) {
  EXPECT_NE(Value("a"), Value("foo"));
  EXPECT_NE(Value("hello world"), Value("hello worle"));
}

TEST(Crc32c, Mask) {
  const uint32_t crc = Value("foo");
  EXPECT_NE(crc, Mask(crc));
  EXPECT_NE(crc, Mask(Mask(crc)));
  EXPECT_EQ(crc, Unmask(Mask(crc)));
  EXPECT_EQ(crc, Unmask(Unmask(Mask(Mask(crc)))));
  // All-zero data never carries a valid masked checksum of zero.
  EXPECT_NE(Mask(0), 0u);
}

}  // namespace
}  // namespace detcd::crc32c

// etcd's quota arithmetic, the alarm set and its texts.
#include "engine/server/quota.h"

#include <string>

#include "gtest/gtest.h"

namespace detcd::server {
namespace {

namespace pb = ::etcdserverpb;

TEST(Quota, EtcdsDefaultsAndCosts) {
  EXPECT_EQ(EffectiveQuotaBytes(0), int64_t{2} << 30);
  EXPECT_EQ(EffectiveQuotaBytes(-1), 0);  // disabled
  EXPECT_EQ(EffectiveQuotaBytes(1000), 1000);

  pb::PutRequest put;
  put.set_key("abc");
  put.set_value("12345");
  EXPECT_EQ(QuotaCost(put), 256 + 3 + 5);
  EXPECT_EQ(QuotaCost(pb::LeaseGrantRequest()), 64);

  pb::TxnRequest txn;
  EXPECT_EQ(QuotaCost(txn), 0);
  *txn.add_success()->mutable_request_put() = put;
  *txn.add_success()->mutable_request_put() = put;
  txn.add_failure()->mutable_request_range()->set_key("x");
  *txn.add_failure()->mutable_request_put() = put;
  EXPECT_EQ(QuotaCost(txn), 2 * (256 + 8));  // the larger branch
  // Puts inside nested txns cost nothing in etcd.
  pb::TxnRequest outer;
  *outer.add_success()->mutable_request_txn() = txn;
  EXPECT_EQ(QuotaCost(outer), 0);

  EXPECT_TRUE(QuotaAvailable(1000, 990, 0));
  EXPECT_TRUE(QuotaAvailable(1000, 900, 99));
  EXPECT_FALSE(QuotaAvailable(1000, 900, 100));  // strictly below
  EXPECT_TRUE(QuotaAvailable(0, 1 << 30, 1 << 20));  // no quota
}

TEST(AlarmSet, ActivateDeactivateGet) {
  AlarmSet a;
  EXPECT_FALSE(a.Has(pb::NOSPACE));
  pb::AlarmMember m = a.Activate(3, pb::NOSPACE);
  EXPECT_EQ(m.memberid(), 3u);
  a.Activate(3, pb::NOSPACE);  // again: no change
  a.Activate(1, pb::NOSPACE);
  a.Activate(2, pb::CORRUPT);
  EXPECT_EQ(a.size(), 3u);
  EXPECT_TRUE(a.Has(pb::NOSPACE));
  EXPECT_TRUE(a.Has(2, pb::CORRUPT));
  EXPECT_FALSE(a.Has(3, pb::CORRUPT));
  ASSERT_EQ(a.Get(pb::NOSPACE).size(), 2u);
  EXPECT_EQ(a.Get(pb::NOSPACE)[0].memberid(), 1u);
  ASSERT_EQ(a.Get(pb::NONE).size(), 3u);
  EXPECT_EQ(a.Get(pb::NONE)[2].alarm(), pb::CORRUPT);
  EXPECT_FALSE(a.Deactivate(9, pb::NOSPACE));
  EXPECT_TRUE(a.Deactivate(1, pb::NOSPACE));
  EXPECT_TRUE(a.Deactivate(3, pb::NOSPACE));
  EXPECT_FALSE(a.Has(pb::NOSPACE));
  EXPECT_TRUE(a.Has(pb::CORRUPT));
}

TEST(AlarmSet, ApplyAlarmAnswersAsEtcd) {
  AlarmSet a;
  pb::AlarmRequest r;
  r.set_action(pb::AlarmRequest::ACTIVATE);
  r.set_memberid(5);
  r.set_alarm(pb::NOSPACE);
  pb::AlarmResponse resp = ApplyAlarm(a, r);
  ASSERT_EQ(resp.alarms_size(), 1);
  EXPECT_EQ(resp.alarms(0).memberid(), 5u);
  r.set_action(pb::AlarmRequest::GET);
  r.set_alarm(pb::NONE);
  EXPECT_EQ(ApplyAlarm(a, r).alarms_size(), 1);
  r.set_alarm(pb::CORRUPT);
  EXPECT_EQ(ApplyAlarm(a, r).alarms_size(), 0);
  r.set_action(pb::AlarmRequest::DEACTIVATE);
  r.set_alarm(pb::NOSPACE);
  EXPECT_EQ(ApplyAlarm(a, r).alarms_size(), 1);
  EXPECT_EQ(ApplyAlarm(a, r).alarms_size(), 0);  // already gone
  EXPECT_EQ(a.size(), 0u);
}

TEST(AlarmSet, ImageRoundTripsAndRejectsCorruption) {
  AlarmSet a;
  a.Activate(uint64_t{1} << 63, pb::NOSPACE);
  a.Activate(2, pb::CORRUPT);
  const std::string image = a.Snapshot();
  AlarmSet back;
  ASSERT_TRUE(back.Restore(image).ok());
  EXPECT_EQ(back.Snapshot(), image);
  for (size_t cut = 0; cut < image.size(); ++cut) {
    EXPECT_FALSE(back.Restore(image.substr(0, cut)).ok()) << cut;
  }
  EXPECT_FALSE(back.Restore(image + "x").ok());
  EXPECT_EQ(back.Snapshot(), image);
}

// Go's proto.CompactTextString of an AlarmMember, as etcd's Status lists
// alarms in `errors`.
TEST(AlarmText, GoCompactText) {
  pb::AlarmMember m;
  m.set_memberid(9372538179322589801u);
  m.set_alarm(pb::NOSPACE);
  EXPECT_EQ(AlarmText(m), "memberID:9372538179322589801 alarm:NOSPACE ");
  m.set_alarm(pb::CORRUPT);
  EXPECT_EQ(AlarmText(m), "memberID:9372538179322589801 alarm:CORRUPT ");
  m.set_memberid(0);
  EXPECT_EQ(AlarmText(m), "alarm:CORRUPT ");
  m.set_alarm(static_cast<pb::AlarmType>(7));
  EXPECT_EQ(AlarmText(m), "alarm:7 ");
}

}  // namespace
}  // namespace detcd::server

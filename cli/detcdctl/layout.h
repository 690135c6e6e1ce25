// Text layouts of the Go libraries etcdctl prints with: text/tabwriter
// (its help pages) and olekukonko/tablewriter (its `-w table` output).
#ifndef DETCD_CLI_DETCDCTL_LAYOUT_H_
#define DETCD_CLI_DETCDCTL_LAYOUT_H_

#include <string>
#include <string_view>
#include <vector>

namespace detcd::ctl {

// text/tabwriter with minwidth 0, tabwidth 8, padding 1, padchar '\t'
// and no flags (etcdctl's help writer): tab-terminated cells of adjacent
// lines form columns; each column is padded with tabs to its widest cell
// plus one, rounded up to a multiple of 8.
std::string TabFormat(absl::string_view text);

// tablewriter as etcdctl configures it: bordered, header centered and
// upper-cased, cells right-aligned, cells wider than 30 columns wrapped
// at spaces.
std::string RenderTable(const std::vector<std::string>& header,
                        const std::vector<std::vector<std::string>>& rows);

}  // namespace detcd::ctl

#endif  // DETCD_CLI_DETCDCTL_LAYOUT_H_

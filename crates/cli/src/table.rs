//! Columns as Consul's CLI prints them (`ryanuber/columnize` with its defaults): every column as
//! wide as its widest cell, two spaces between columns, no trailing blanks.

/// The rows (the first is usually the header) laid out in columns.
pub fn columns(rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            let w = cell.chars().count();
            match widths.get_mut(i) {
                Some(max) => *max = (*max).max(w),
                None => widths.push(w),
            }
        }
    }
    rows.iter()
        .map(|row| {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                let pad = widths[i].saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
            }
            line.trim_end().to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::columns;

    fn row(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|c| (*c).to_owned()).collect()
    }

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let out = columns(&[
            row(&["ID", "Source", "Action"]),
            row(&["1", "web", "allow"]),
            row(&["2", "authentication", ""]),
        ]);
        assert_eq!(
            out,
            "ID  Source          Action\n1   web             allow\n2   authentication"
        );
    }
}

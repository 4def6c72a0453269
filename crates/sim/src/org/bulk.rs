//! Bulk API 2.0 query jobs: create, status, and results as CSV pages with a locator.

use super::*;

impl Org {
    pub(super) fn bulk_create(&mut self, req: &Request) -> Response {
        let body = req.body.clone().unwrap_or(Value::Null);
        let Some(q) = body["query"].as_str().map(str::to_owned) else {
            return resp(400, err("INVALIDJOB", "query is required", &[]));
        };
        let all = body["operation"] == "queryAll";
        let parsed = match soql::parse(&q) {
            Ok(p) => p,
            Err(e) => return resp(400, err("INVALIDJOB", &e, &[])),
        };
        let r = self.query(Some(&q), all);
        if r.status != 200 {
            return r;
        }
        // The whole result, not a page: the cursor the query made holds it.
        let qid = self.cursor_seq;
        let rows = self.cursors.remove(&qid).unwrap_or_else(|| {
            r.body
                .as_ref()
                .and_then(|b| b["records"].as_array().cloned())
                .unwrap_or_default()
        });
        self.id_seq += 1;
        let id = format!("750SIM{:09}AAA", self.id_seq);
        self.bulk_jobs.insert(
            id.clone(),
            BulkJob {
                polls: 0,
                fields: parsed.fields.clone(),
                rows,
            },
        );
        resp(200, self.bulk_info(&id, "UploadComplete", &parsed.object))
    }

    pub(super) fn bulk_info(&self, id: &str, state: &str, object: &str) -> Value {
        let n = self.bulk_jobs.get(id).map(|j| j.rows.len()).unwrap_or(0);
        json!({
            "id": id, "operation": "query", "object": object, "createdById": self.login_user,
            "createdDate": format_sf_datetime(self.now()), "systemModstamp": format_sf_datetime(self.now()),
            "state": state, "concurrencyMode": "Parallel", "contentType": "CSV",
            "apiVersion": self.opts.api_version.parse::<f64>().unwrap_or(62.0),
            "lineEnding": "LF", "columnDelimiter": "COMMA",
            "numberRecordsProcessed": if state == "JobComplete" { n } else { 0 },
        })
    }

    pub(super) fn bulk_status(&mut self, id: &str) -> Response {
        let Some(job) = self.bulk_jobs.get_mut(id) else {
            return resp(
                404,
                err("NOT_FOUND", "The requested resource does not exist", &[]),
            );
        };
        // The first poll finds the job still running, as a real one usually is.
        job.polls += 1;
        let state = if job.polls < 2 {
            "InProgress"
        } else {
            "JobComplete"
        };
        resp(200, self.bulk_info(id, state, ""))
    }

    pub(super) fn bulk_results(&mut self, id: &str, q: &HashMap<String, String>) -> Response {
        let Some(job) = self.bulk_jobs.get(id) else {
            return resp(
                404,
                err("NOT_FOUND", "The requested resource does not exist", &[]),
            );
        };
        if job.polls < 2 {
            return resp(412, err("JOB_NOT_COMPLETE", "The job is not complete", &[]));
        }
        let offset: usize = match q.get("locator").map(String::as_str) {
            None | Some("") => 0,
            Some(l) => match l.parse() {
                Ok(n) => n,
                Err(_) => return resp(400, err("INVALID_LOCATOR", "invalid locator", &[])),
            },
        };
        let max: usize = q
            .get("maxRecords")
            .and_then(|m| m.parse().ok())
            .unwrap_or(50_000)
            .max(1);
        let end = (offset + max).min(job.rows.len());
        let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
        let _ = w.write_record(&job.fields);
        for row in &job.rows[offset.min(end)..end] {
            let cells: Vec<String> = job
                .fields
                .iter()
                .map(|f| match soql::field(row, f) {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(v) => v.to_string(),
                })
                .collect();
            let _ = w.write_record(&cells);
        }
        let text = String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default();
        let locator = if end < job.rows.len() {
            end.to_string()
        } else {
            "null".into()
        };
        Response {
            status: 200,
            body: None,
            raw: Some((
                text,
                vec![
                    ("Sforce-Locator".into(), locator),
                    (
                        "Sforce-NumberOfRecords".into(),
                        (end - offset.min(end)).to_string(),
                    ),
                    ("Content-Type".into(), "text/csv".into()),
                ],
            )),
        }
    }
}

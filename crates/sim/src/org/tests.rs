use super::*;

fn org() -> Org {
    Org::new(
        SimOptions {
            records: 200,
            ..Default::default()
        },
        "http://127.0.0.1:1",
    )
}

fn req(method: &str, path: &str, body: Value) -> Request {
    Request {
        method: method.into(),
        path: path.into(),
        query: HashMap::new(),
        body: Some(body),
        user_id: "005SIM000000001AAA".into(),
        version: "62.0".into(),
    }
}

fn first_id(org: &Org, object: &str, pred: impl Fn(&Value) -> bool) -> String {
    org.rows(object).into_iter().find(|r| pred(r)).unwrap()["Id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn task_validation_table() {
    let mut o = org();
    let contact = first_id(&o, "Contact", |_| true);
    let account = first_id(&o, "Account", |_| true);
    let lead = first_id(&o, "Lead", |_| true);
    let ok = json!({"Subject": "Call", "Status": "Completed", "TaskSubtype": "Call", "CallType": "Inbound"});
    let with = |extra: Value| {
        let mut b = ok.clone();
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let table: Vec<(&str, Value, u16, &str)> = vec![
        (
            "valid",
            with(json!({"WhoId": contact, "WhatId": account, "CallDurationInSeconds": 42})),
            201,
            "",
        ),
        (
            "bad CallType",
            with(json!({"CallType": "Incoming"})),
            400,
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
        ),
        (
            "bad TaskSubtype",
            with(json!({"TaskSubtype": "Phone"})),
            400,
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
        ),
        (
            "Account in WhoId",
            with(json!({"WhoId": account})),
            400,
            "FIELD_INTEGRITY_EXCEPTION",
        ),
        (
            "Contact in WhatId",
            with(json!({"WhatId": contact})),
            400,
            "MALFORMED_ID",
        ),
        (
            "Lead with WhatId",
            with(json!({"WhoId": lead, "WhatId": account})),
            400,
            "FIELD_INTEGRITY_EXCEPTION",
        ),
        (
            "unknown field",
            with(json!({"Colour__c": "red"})),
            400,
            "INVALID_FIELD",
        ),
        (
            "read-only field",
            with(json!({"IsClosed": true})),
            400,
            "INVALID_FIELD_FOR_INSERT_UPDATE",
        ),
        (
            "subject too long",
            with(json!({"Subject": "x".repeat(256)})),
            400,
            "STRING_TOO_LONG",
        ),
        // Status is required but has a default (FLD: "Defaulted on create").
        ("missing status", json!({"Subject": "Call"}), 201, ""),
        (
            "deleted who",
            with(json!({"WhoId": "003000999999999AAA"})),
            400,
            "ENTITY_IS_DELETED",
        ),
        (
            "bad datetime",
            with(json!({"Call_Start__c": "yesterday"})),
            400,
            "JSON_PARSER_ERROR",
        ),
        (
            "custom fields",
            with(json!({"Call_Start__c": "2026-11-21T10:00:00.000+0000", "Call_Memo__c": "A;B"})),
            201,
            "",
        ),
    ];
    for (name, body, status, code) in table {
        let r = o.dispatch(&req("POST", "/sobjects/Task", body));
        assert_eq!(r.status, status, "{name}: {:?}", r.body);
        if !code.is_empty() {
            assert_eq!(r.body.unwrap()[0]["errorCode"], code, "{name}");
        }
    }
}

#[test]
fn upsert_collections_and_composite_shapes() {
    let mut o = org();
    let body = json!({"Subject": "Call", "Status": "Completed"});
    let r = o.dispatch(&req(
        "PATCH",
        "/sobjects/Task/Call_Id__c/abc-1",
        body.clone(),
    ));
    assert_eq!(
        (r.status, r.body.as_ref().unwrap()["created"].clone()),
        (201, json!(true))
    );
    let r = o.dispatch(&req(
        "PATCH",
        "/sobjects/Task/Call_Id__c/abc-1",
        json!({"Description": "memo"}),
    ));
    assert_eq!(
        (r.status, r.body.as_ref().unwrap()["created"].clone()),
        (200, json!(false))
    );
    assert_eq!(o.count("Task"), 1);
    // Two Tasks with one external id: 300 with both URLs.
    o.admin_upsert(
        "Task",
        json!({"Call_Id__c": "dup", "Status": "Completed"})
            .as_object()
            .unwrap()
            .clone(),
    );
    o.admin_upsert(
        "Task",
        json!({"Call_Id__c": "dup", "Status": "Completed"})
            .as_object()
            .unwrap()
            .clone(),
    );
    let r = o.dispatch(&req("PATCH", "/sobjects/Task/Call_Id__c/dup", body.clone()));
    assert_eq!(r.status, 300);
    assert_eq!(r.body.unwrap().as_array().unwrap().len(), 2);
    let r = o.dispatch(&req("PATCH", "/sobjects/Task/Nope__c/x", body.clone()));
    assert_eq!(r.status, 404);

    // Collections: 200 with one result per record; errors use statusCode.
    let r = o.dispatch(&req(
        "POST",
        "/composite/sobjects",
        json!({"allOrNone": false, "records": [
            {"attributes": {"type": "Task"}, "Subject": "a", "Status": "Completed"},
            {"attributes": {"type": "Task"}, "Subject": "b", "CallType": "Sideways", "Status": "Completed"},
        ]}),
    ));
    assert_eq!(r.status, 200);
    let b = r.body.unwrap();
    assert_eq!(b[0]["success"], true);
    assert_eq!(
        b[1]["errors"][0]["statusCode"],
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    );
    let too_many: Vec<Value> = (0..201)
        .map(|_| json!({"attributes": {"type": "Task"}, "Status": "Completed"}))
        .collect();
    assert_eq!(
        o.dispatch(&req(
            "POST",
            "/composite/sobjects",
            json!({"records": too_many})
        ))
        .status,
        400
    );

    // Composite: always 200, sub-statuses inside.
    let r = o.dispatch(&req(
        "POST",
        "/composite",
        json!({"compositeRequest": [
            {"method": "POST", "url": "/services/data/v62.0/sobjects/Task", "referenceId": "t1", "body": {"Status": "Completed"}},
            {"method": "GET", "url": "/services/data/v62.0/sobjects/Task/00T000000000000AAA", "referenceId": "t2"},
        ]}),
    ));
    assert_eq!(r.status, 200);
    let b = r.body.unwrap();
    assert_eq!(b["compositeResponse"][0]["httpStatusCode"], 201);
    assert_eq!(b["compositeResponse"][1]["httpStatusCode"], 404);
}

fn get(o: &mut Org, path: &str, q: &[(&str, &str)]) -> Response {
    let mut r = req("GET", path, Value::Null);
    r.body = None;
    r.query = q
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    o.dispatch(&r)
}

fn code(r: &Response) -> String {
    r.body.as_ref().unwrap()[0]["errorCode"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn user_has_no_is_deleted() {
    let mut o = org();
    let r = get(&mut o, "/query", &[("q", "SELECT Id, IsDeleted FROM User")]);
    assert_eq!((r.status, code(&r)), (400, "INVALID_FIELD".into()));
    assert!(r.body.unwrap()[0]["message"]
        .as_str()
        .unwrap()
        .contains("No such column 'IsDeleted' on entity 'User'"));
    let r = get(
        &mut o,
        "/queryAll",
        &[("q", "SELECT Id, IsDeleted FROM User")],
    );
    assert_eq!(r.status, 400);
    assert_eq!(
        get(&mut o, "/query", &[("q", "SELECT Id, IsActive FROM User")]).status,
        200
    );
    let d = get(&mut o, "/sobjects/User/describe", &[]).body.unwrap();
    assert!(d["fields"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["name"] != "IsDeleted"));
    // Users are deactivated, never deleted.
    let user = first_id(&o, "User", |_| true);
    let mut r = req("DELETE", &format!("/sobjects/User/{user}"), Value::Null);
    r.body = None;
    assert_eq!(o.dispatch(&r).status, 400);
}

#[test]
fn create_only_fields_are_refused_on_update_and_on_a_matching_upsert() {
    let mut o = org();
    let full = json!({"Subject": "Call", "Status": "Completed", "TaskSubtype": "Call"});
    // An upsert that inserts may name TaskSubtype.
    let r = o.dispatch(&req("PATCH", "/sobjects/Task/Call_Id__c/c-1", full.clone()));
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body.unwrap()["id"].as_str().unwrap().to_owned();
    // The same upsert again matches: an update, and TaskSubtype is create-only.
    let r = o.dispatch(&req("PATCH", "/sobjects/Task/Call_Id__c/c-1", full.clone()));
    assert_eq!(
        (r.status, code(&r)),
        (400, "INVALID_FIELD_FOR_INSERT_UPDATE".into())
    );
    assert_eq!(r.body.unwrap()[0]["fields"], json!(["TaskSubtype"]));
    let r = o.dispatch(&req(
        "PATCH",
        &format!("/sobjects/Task/{id}"),
        json!({"TaskSubtype": "Call"}),
    ));
    assert_eq!(code(&r), "INVALID_FIELD_FOR_INSERT_UPDATE");
    // Collections say the same per record.
    let r = o.dispatch(&req(
        "PATCH",
        "/composite/sobjects/Task/Call_Id__c",
        json!({"records": [{"attributes": {"type": "Task"}, "Call_Id__c": "c-1", "TaskSubtype": "Call"}]}),
    ));
    assert_eq!(
        r.body.unwrap()[0]["errors"][0]["statusCode"],
        "INVALID_FIELD_FOR_INSERT_UPDATE"
    );
    // Without it, the matching upsert is an update.
    let r = o.dispatch(&req(
        "PATCH",
        "/sobjects/Task/Call_Id__c/c-1",
        json!({"Description": "memo"}),
    ));
    assert_eq!(r.status, 200);
    assert_eq!(o.get_row("Task", &id).unwrap()["TaskSubtype"], "Call");
    // A unique external id refuses a second record with the same value.
    let r = o.dispatch(&req(
        "POST",
        "/sobjects/Task",
        json!({"Status": "Completed", "Call_Id__c": "c-1"}),
    ));
    assert_eq!(code(&r), "DUPLICATE_VALUE");
}

#[test]
fn soql_names_are_case_insensitive_and_answers_canonical() {
    let mut o = org();
    let r = get(
        &mut o,
        "/query",
        &[(
            "q",
            "select id, NAME, account.name from contact where phone != null limit 3",
        )],
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    let rec = &r.body.unwrap()["records"][0];
    assert!(
        rec.get("Id").is_some() && rec.get("Name").is_some(),
        "{rec}"
    );
    assert!(rec.get("Account").is_some() && rec.get("account").is_none());
    let r = get(
        &mut o,
        "/query",
        &[("q", "SELECT Id, Phone, phone FROM Contact")],
    );
    assert_eq!((r.status, code(&r)), (400, "MALFORMED_QUERY".into()));
    assert_eq!(get(&mut o, "/sobjects/contact/describe", &[]).status, 200);
    assert_eq!(get(&mut o, "/sobjects/Nope/describe", &[]).status, 404);
}

#[test]
fn ids_of_15_and_18_characters_name_the_same_record() {
    let mut o = org();
    let contact = first_id(&o, "Contact", |c| c["IsPersonAccount"] != json!(true));
    let short = &contact[..15];
    let r = get(&mut o, &format!("/sobjects/Contact/{short}"), &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body.unwrap()["Id"], json!(contact));
    let q = format!("SELECT Id FROM Contact WHERE Id = '{short}'");
    assert_eq!(
        get(&mut o, "/query", &[("q", &q)]).body.unwrap()["totalSize"],
        1
    );
    let q = format!("SELECT Id FROM Contact WHERE Id IN ('{contact}', '003000000000000')");
    assert_eq!(
        get(&mut o, "/query", &[("q", &q)]).body.unwrap()["totalSize"],
        1
    );
    let r = o.dispatch(&req(
        "POST",
        "/sobjects/Task",
        json!({"Status": "Completed", "WhoId": short}),
    ));
    let task = r.body.unwrap()["id"].as_str().unwrap().to_owned();
    assert_eq!(o.get_row("Task", &task).unwrap()["WhoId"], json!(contact));
}

#[test]
fn a_deleted_record_answers_entity_is_deleted() {
    let mut o = org();
    let r = o.dispatch(&req(
        "POST",
        "/sobjects/Task",
        json!({"Status": "Completed"}),
    ));
    let id = r.body.unwrap()["id"].as_str().unwrap().to_owned();
    let mut del = req("DELETE", &format!("/sobjects/Task/{id}"), Value::Null);
    del.body = None;
    assert_eq!(o.dispatch(&del).status, 204);
    let r = get(&mut o, &format!("/sobjects/Task/{id}"), &[]);
    assert_eq!((r.status, code(&r)), (404, "ENTITY_IS_DELETED".into()));
    let r = o.dispatch(&req(
        "PATCH",
        &format!("/sobjects/Task/{id}"),
        json!({"Subject": "x"}),
    ));
    assert_eq!((r.status, code(&r)), (404, "ENTITY_IS_DELETED".into()));
    let r = o.dispatch(&del);
    assert_eq!(code(&r), "ENTITY_IS_DELETED");
    let r = get(&mut o, "/sobjects/Task/00T000000000000AAA", &[]);
    assert_eq!((r.status, code(&r)), (404, "NOT_FOUND".into()));
}

#[test]
fn api_versions() {
    let o = org();
    assert!(o.check_version("62.0").is_ok());
    assert!(o.check_version("31.0").is_ok());
    assert_eq!(o.check_version("63.0").unwrap_err().status, 404);
    assert_eq!(o.check_version("99.0").unwrap_err().status, 404);
    assert_eq!(o.check_version("20.0").unwrap_err().status, 410);
    assert_eq!(o.check_version("62").unwrap_err().status, 404);
    assert_eq!(o.check_version("latest").unwrap_err().status, 404);
}

#[test]
fn a_task_without_status_gets_the_picklist_default() {
    let mut o = org();
    let r = o.dispatch(&req("POST", "/sobjects/Task", json!({"Subject": "Call"})));
    assert_eq!(r.status, 201);
    let id = r.body.unwrap()["id"].as_str().unwrap().to_owned();
    let row = o.get_row("Task", &id).unwrap();
    assert_eq!(row["Status"], "Not Started");
    assert_eq!(row["IsClosed"], false);
    assert_eq!(row["Priority"], "Normal");
}

#[test]
fn a_record_get_returns_every_field() {
    let mut o = org();
    let lead = first_id(&o, "Lead", |_| true);
    let r = get(&mut o, &format!("/sobjects/Lead/{lead}"), &[])
        .body
        .unwrap();
    for f in [
        "Id",
        "Name",
        "Company",
        "Phone",
        "MobilePhone",
        "Fax",
        "IsConverted",
        "OwnerId",
        "CreatedDate",
        "SystemModstamp",
        "IsDeleted",
    ] {
        assert!(r.get(f).is_some(), "{f} missing: {r}");
    }
    let r = get(
        &mut o,
        &format!("/sobjects/Lead/{lead}"),
        &[("fields", "company,Phone")],
    )
    .body
    .unwrap();
    assert!(r.get("Company").is_some() && r.get("Name").is_none(), "{r}");
    let r = get(
        &mut o,
        &format!("/sobjects/Lead/{lead}"),
        &[("fields", "Colour__c")],
    );
    assert_eq!(code(&r), "INVALID_FIELD");
}

#[test]
fn count_literals_and_types_as_salesforce_parses_them() {
    let mut o = org();
    let contacts = o.count("Contact");
    let r = get(&mut o, "/query", &[("q", "SELECT COUNT() FROM Contact")])
        .body
        .unwrap();
    assert_eq!(
        (r["totalSize"].as_u64(), r["records"].clone()),
        (Some(contacts as u64), json!([]))
    );
    let table: &[(&str, u16, &str)] = &[
        (
            "SELECT Id FROM Contact WHERE CreatedDate = LAST_N_DAYS:7",
            200,
            "",
        ),
        ("SELECT Id FROM Contact WHERE CreatedDate < TODAY", 200, ""),
        (
            "SELECT Id FROM Task WHERE ActivityDate = YESTERDAY",
            200,
            "",
        ),
        (
            "SELECT Id FROM Contact WHERE SystemModstamp >= 2024-05-01T12:00:00Z",
            200,
            "",
        ),
        (
            "SELECT Id FROM Contact WHERE SystemModstamp >= 2024-05-01T21:00:00+09:00",
            200,
            "",
        ),
        (
            "SELECT Id FROM Contact WHERE SystemModstamp >= 2024-05-01T12:00:00.000+0000",
            400,
            "MALFORMED_QUERY",
        ),
        (
            "SELECT Id FROM Contact WHERE SystemModstamp >= 2024-05-01T12:00:00.000Z",
            400,
            "MALFORMED_QUERY",
        ),
        (
            "SELECT Id FROM Contact WHERE SystemModstamp >= '2024-05-01T12:00:00Z'",
            400,
            "INVALID_FIELD",
        ),
        (
            "SELECT Id FROM Task WHERE ActivityDate = 2024-05-01T12:00:00Z",
            400,
            "INVALID_FIELD",
        ),
        (
            "SELECT Id FROM Contact WHERE CreatedDate = LAST_FORTNIGHT",
            400,
            "MALFORMED_QUERY",
        ),
        (
            "SELECT Id FROM Lead WHERE IsConverted = 'false'",
            400,
            "INVALID_FIELD",
        ),
        (
            "SELECT Id FROM Contact WHERE Name = 5",
            400,
            "INVALID_FIELD",
        ),
        (
            "SELECT Id FROM Task WHERE CallDurationInSeconds > '5'",
            400,
            "INVALID_FIELD",
        ),
        (
            "SELECT COUNT() FROM Contact ORDER BY Id",
            400,
            "MALFORMED_QUERY",
        ),
        (
            "SELECT Id FROM Contact WHERE IsDeleted LIKE 'x%'",
            400,
            "INVALID_FIELD",
        ),
        ("SELECT Id FROM Nope", 400, "INVALID_TYPE"),
    ];
    for (q, status, c) in table {
        let r = get(&mut o, "/query", &[("q", q)]);
        assert_eq!(r.status, *status, "{q}: {:?}", r.body);
        if !c.is_empty() {
            assert_eq!(code(&r), *c, "{q}");
        }
    }
}

#[test]
fn jwt_bearer_checks_signature_and_audience() {
    let key = include_str!("../../../../tests/fixtures/jwt-test-key.pem");
    let mut o = Org::new(
        SimOptions {
            records: 10,
            jwt_public_key_pem: Some(
                include_str!("../../../../tests/fixtures/jwt-test-key.pub.pem").into(),
            ),
            ..Default::default()
        },
        "http://127.0.0.1:1",
    );
    let sign = |claims: Value, pem: &str| {
        let k = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &k,
        )
        .unwrap()
    };
    let exp = o.now().timestamp() + 120;
    let claims = |aud: &str| json!({"iss": "callsync-sim-client", "sub": "agent@sim.example.com", "aud": aud, "exp": exp});
    let grant = |o: &mut Org, assertion: String| {
        let form: HashMap<String, String> = [
            (
                "grant_type".to_string(),
                "urn:ietf:params:oauth:grant-type:jwt-bearer".to_string(),
            ),
            ("assertion".to_string(), assertion),
        ]
        .into();
        o.token_endpoint(&form)
    };
    let (s, v) = grant(&mut o, sign(claims("https://login.salesforce.com"), key));
    assert_eq!(s, 200, "{v}");
    let (s, v) = grant(&mut o, sign(claims("http://127.0.0.1:1"), key));
    assert_eq!(
        (s, v["error_description"].as_str()),
        (400, Some("audience is invalid"))
    );
    // Signed by another key.
    let other = include_str!("../../../../tests/fixtures/jwt-other-key.pem");
    let (s, v) = grant(&mut o, sign(claims("https://login.salesforce.com"), other));
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
    // Tampered claims under a valid signature.
    let good = sign(claims("https://login.salesforce.com"), key);
    let parts: Vec<&str> = good.split('.').collect();
    use base64::Engine as _;
    let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&json!({"iss": "callsync-sim-client", "sub": "other@x", "aud": "https://login.salesforce.com", "exp": exp})).unwrap());
    let (s, _) = grant(&mut o, format!("{}.{forged}.{}", parts[0], parts[2]));
    assert_eq!(s, 400);
    // No certificate on the app: no JWT sign-in.
    let mut bare = org();
    let (s, v) = grant(&mut bare, good);
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_client")));
}

#[test]
fn replication_windows() {
    let mut o = org();
    let id = first_id(&o, "Lead", |_| true);
    o.admin_delete("Lead", &id);
    let now = o.now() + Duration::seconds(1);
    let q = |start: chrono::DateTime<Utc>| {
        let mut m = HashMap::new();
        m.insert("start".to_string(), format_sf_datetime(start));
        m.insert("end".to_string(), format_sf_datetime(now));
        m
    };
    let mut r = req("GET", "/sobjects/Lead/deleted", Value::Null);
    r.query = q(now - Duration::days(1));
    let d = o.dispatch(&r);
    assert_eq!(d.body.unwrap()["deletedRecords"][0]["id"], json!(id));
    r.query = q(now - Duration::days(16));
    assert_eq!(
        o.dispatch(&r).body.unwrap()[0]["errorCode"],
        "INVALID_REPLICATION_DATE"
    );
    let mut r = req("GET", "/sobjects/Lead/updated", Value::Null);
    r.query = q(now - Duration::days(31));
    assert_eq!(o.dispatch(&r).status, 400);
    r.query = q(now - Duration::days(29));
    assert_eq!(o.dispatch(&r).status, 200);
}

/// A Task moved from a Contact to a Lead must clear its WhatId in the same update: the lead
/// rule holds for the record the update leaves, not only for the body.
#[test]
fn an_update_to_a_lead_who_must_clear_the_stored_what() {
    let mut o = org();
    let contact = first_id(&o, "Contact", |c| c["IsPersonAccount"] != json!(true));
    let account = first_id(&o, "Account", |a| a["IsPersonAccount"] != json!(true));
    let lead = first_id(&o, "Lead", |_| true);
    let r = o.dispatch(&req(
        "POST",
        "/sobjects/Task",
        json!({"Status": "Completed", "WhoId": contact, "WhatId": account}),
    ));
    let task = r.body.unwrap()["id"].as_str().unwrap().to_owned();
    let path = format!("/sobjects/Task/{task}");
    let r = o.dispatch(&req("PATCH", &path, json!({"WhoId": lead})));
    assert_eq!(
        (r.status, code(&r)),
        (400, "FIELD_INTEGRITY_EXCEPTION".into())
    );
    let r = o.dispatch(&req("PATCH", &path, json!({"WhoId": lead, "WhatId": null})));
    assert_eq!(r.status, 204);
    let row = o.get_row("Task", &task).unwrap();
    assert_eq!(
        (row["WhoId"].clone(), row["WhatId"].clone()),
        (json!(lead), Value::Null)
    );
}

/// Lead needs LastName and Company, Contact LastName; Name is their compound.
#[test]
fn required_fields_on_create_and_the_compound_name() {
    let mut o = org();
    let r = o.dispatch(&req(
        "POST",
        "/sobjects/Lead",
        json!({"LastName": "Caller"}),
    ));
    assert_eq!((r.status, code(&r)), (400, "REQUIRED_FIELD_MISSING".into()));
    let r = o.dispatch(&req(
        "POST",
        "/sobjects/Contact",
        json!({"Phone": "+81 3-1234-5678"}),
    ));
    assert_eq!((r.status, code(&r)), (400, "REQUIRED_FIELD_MISSING".into()));
    let r = o.dispatch(&req(
        "POST",
        "/sobjects/Lead",
        json!({"FirstName": "Ren", "LastName": "Caller", "Company": "Unknown"}),
    ));
    assert_eq!(r.status, 201);
    let id = r.body.unwrap()["id"].as_str().unwrap().to_owned();
    assert_eq!(o.get_row("Lead", &id).unwrap()["Name"], json!("Ren Caller"));
    let r = o.dispatch(&req(
        "PATCH",
        &format!("/sobjects/Lead/{id}"),
        json!({"LastName": "Known"}),
    ));
    assert_eq!(r.status, 204);
    assert_eq!(o.get_row("Lead", &id).unwrap()["Name"], json!("Ren Known"));
}

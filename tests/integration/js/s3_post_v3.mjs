// s3_post_v3.mjs: a browser upload to Walrus as a web page makes it: the
// page's server signs a POST policy (SigV4, as @aws-sdk/s3-presigned-post
// does), the browser sends its CORS preflight and then the form with
// fetch() and FormData; the AWS SDK for JavaScript v3 reads the object back.
// Usage: node s3_post_v3.mjs ENDPOINT BUCKET (keys in AWS_* variables).
// Prints one line per check; exits 1 at the first failure.
import { createHmac } from "node:crypto";
import {
  S3Client, CreateBucketCommand, PutBucketCorsCommand, GetObjectCommand,
  DeleteObjectCommand, DeleteBucketCommand,
} from "@aws-sdk/client-s3";

const [endpoint, bucket] = process.argv.slice(2);
const ORIGIN = "https://app.example.com";
const region = "us-east-1";
const s3 = new S3Client({ endpoint, region, forcePathStyle: true });

function check(what, ok, detail) {
  console.log(`${ok ? "ok" : "FAIL"} ${what}${detail ? ": " + detail : ""}`);
  if (!ok) process.exit(1);
}

const hmac = (k, s) => createHmac("sha256", k).update(s).digest();

// What the page's server does (the secret never reaches the browser).
function presignedPost(key, conditions) {
  const now = new Date();
  const amzDate = now.toISOString().replace(/[-:]/g, "").replace(/\.\d+/, "");
  const day = amzDate.slice(0, 8);
  const credential = `${process.env.AWS_ACCESS_KEY_ID}/${day}/${region}/s3/aws4_request`;
  const policy = Buffer.from(JSON.stringify({
    expiration: new Date(now.getTime() + 300000).toISOString(),
    conditions: [{ bucket }, { key }, { "x-amz-algorithm": "AWS4-HMAC-SHA256" },
                 { "x-amz-credential": credential }, { "x-amz-date": amzDate },
                 ...conditions],
  })).toString("base64");
  let k = hmac("AWS4" + process.env.AWS_SECRET_ACCESS_KEY, day);
  k = hmac(hmac(hmac(k, region), "s3"), "aws4_request");
  return { key, "x-amz-algorithm": "AWS4-HMAC-SHA256",
           "x-amz-credential": credential, "x-amz-date": amzDate, policy,
           "x-amz-signature": hmac(k, policy).toString("hex") };
}

await s3.send(new CreateBucketCommand({ Bucket: bucket }));
await s3.send(new PutBucketCorsCommand({ Bucket: bucket, CORSConfiguration: {
  CORSRules: [{ AllowedOrigins: [ORIGIN], AllowedMethods: ["POST", "GET"],
                AllowedHeaders: ["*"], ExposeHeaders: ["ETag", "Location"] }] } }));

// The preflight (a form with fetch is a cross-origin POST).
let r = await fetch(`${endpoint}/${bucket}`, { method: "OPTIONS", headers: {
  Origin: ORIGIN, "Access-Control-Request-Method": "POST" } });
check("preflight POST", r.status === 200 &&
      r.headers.get("access-control-allow-origin") === ORIGIN, String(r.status));

const fields = presignedPost("photos/cat.txt", [
  ["content-length-range", 1, 1024], { "success_action_status": "201" },
  ["starts-with", "$Content-Type", "text/"]]);
const form = new FormData();
for (const [k, v] of Object.entries(fields)) form.append(k, v);
form.append("success_action_status", "201");
form.append("Content-Type", "text/plain");
form.append("file", new Blob(["meow from a browser form"]), "cat.txt");
r = await fetch(`${endpoint}/${bucket}`, { method: "POST", body: form,
  headers: { Origin: ORIGIN } });
const text = await r.text();
check("form upload", r.status === 201, `${r.status} ${text}`);
check("PostResponse", text.includes("<Key>photos/cat.txt</Key>"), text);
check("CORS on the answer", r.headers.get("access-control-allow-origin") === ORIGIN);
check("ETag exposed", (r.headers.get("access-control-expose-headers") || "").includes("ETag"));

const g = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "photos/cat.txt" }));
const got = Buffer.from(await g.Body.transformToByteArray()).toString();
check("object stored", got === "meow from a browser form", got);
check("content type from the form", g.ContentType === "text/plain", g.ContentType);

// Too big for the policy: refused, nothing stored.
const big = new FormData();
for (const [k, v] of Object.entries(fields)) big.append(k, v);
big.append("success_action_status", "201");
big.append("Content-Type", "text/plain");
big.append("file", new Blob([Buffer.alloc(2048)]), "big.txt");
r = await fetch(`${endpoint}/${bucket}`, { method: "POST", body: big });
check("policy limit", r.status === 400 && (await r.text()).includes("EntityTooLarge"),
      String(r.status));

await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: "photos/cat.txt" }));
await s3.send(new DeleteBucketCommand({ Bucket: bucket }));
check("cleanup", true);

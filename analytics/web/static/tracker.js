/*! analytics tracker. <script defer src="https://HOST/tracker.js" data-site-id="SITE" data-user-id="optional">
 * Sends a text/plain beacon (no CORS preflight; fetch keepalive if sendBeacon fails) to HOST/api/ingestion/event:
 * {site_id,event_type,url,referrer,user_id,timestamp,sent_at,event_id[,props]}. A page_view on load, and on
 * pushState/replaceState/popstate when location.pathname changed. user_id: window.analyticsUserId (read at each
 * send), else data-user-id, else null. analytics.track(name,props) sends a custom event; track() a page view. */
(()=>{const s=document.currentScript,d=s&&s.dataset,i=d&&d.siteId,w=window,h=history,c=w.crypto;if(!i||!s.src||h.pushState._a)return;
const u=new URL(s.src).origin+"/api/ingestion/event",f=(v,n)=>v?(""+v).slice(0,n):null;let l;
const x=(e,p)=>{const v=w.analyticsUserId||d.userId,n=new Date().toISOString(),b=JSON.stringify({site_id:i,event_type:f(e,64),
url:f(location.href,2048),referrer:f(document.referrer,2048),user_id:f(v,256),timestamp:n,sent_at:n,
event_id:c&&c.randomUUID?c.randomUUID():Date.now().toString(36)+Math.random().toString(36).slice(2),props:p});let k;
try{k=navigator.sendBeacon(u,new Blob([b],{type:"text/plain"}))}catch(e){}
k||fetch(u,{method:"POST",body:b,keepalive:!0,mode:"no-cors",headers:{"Content-Type":"text/plain"}}).catch(()=>{})};
const t=g=>{const p=location.pathname;if(!g&&p===l)return;l=p;x("page_view")};
for(const m of["pushState","replaceState"]){const o=h[m],n=function(){const r=o.apply(this,arguments);t();return r};n._a=1;h[m]=n}
addEventListener("popstate",()=>t());w.analytics||(w.analytics={track:(e,p)=>e?x(e,p):t(1)});t()})();

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY requirements.txt .
# In the image torch comes from PyPI (a CUDA build); on the laptop path it is the CPU wheel.
RUN pip install -r requirements.txt
COPY . .
EXPOSE 8000
# HTTP (pages, /api/, /v1/); WebSockets are served by daphne (docker-compose.yml, service ws).
CMD ["gunicorn", "-c", "config/gunicorn.py"]
